"""Label correction (step 7 of the method): soft labels follow the model's predictions."""

from __future__ import annotations

import numpy as np


def ema_update(soft_labels: np.ndarray, probs: np.ndarray, alpha: float | np.ndarray = 0.9) -> np.ndarray:
    """New soft labels ``alpha * soft_labels + (1 - alpha) * probs``.

    ``soft_labels`` (N, C) are the running label estimates t_i (rows in the simplex),
    ``probs`` (N, C) the model's softmax predictions q_i. ``alpha`` is the momentum: at 0.9 each
    update moves a soft label 10 % of the way toward the prediction; an (N,) array gives each
    sample its own (``correction_momentum``). Rows stay in the simplex.
    """
    soft_labels = np.asarray(soft_labels)
    probs = np.asarray(probs)
    if soft_labels.shape != probs.shape:
        raise ValueError(f"soft_labels {soft_labels.shape} and probs {probs.shape} differ in shape")
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.ndim not in (0, 1) or (alpha.ndim == 1 and alpha.shape[0] != soft_labels.shape[0]):
        raise ValueError(f"alpha must be a number or one per sample ({soft_labels.shape[0]},), got shape {alpha.shape}")
    if not ((0.0 <= alpha) & (alpha <= 1.0)).all():
        raise ValueError(f"alpha must be in [0, 1], got {alpha.min()}..{alpha.max()}")
    # a number stays a Python float: float32 soft labels are then updated in float32, as before
    # per-sample momenta existed (bit for bit the same runs)
    alpha = alpha[:, None] if alpha.ndim == 1 else float(alpha)
    return alpha * soft_labels + (1.0 - alpha) * probs


def correction_momentum(alpha: float, p_clean: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Per-sample momentum ``1 - strength (1 - alpha) (1 - p_clean)``: a sample's soft label moves
    toward the prediction by the method's step ``1 - alpha`` times the probability that its label
    is noisy, so a label that looks clean is kept and a label that looks wrong is corrected at the
    full rate (the label refinement of DivideMix, Li et al. 2020, on the method's EMA).
    ``strength`` in [0, 1] scales every step (``noise_odds_strength`` for the correction that
    follows the noise the mixture sees)."""
    p_clean = np.asarray(p_clean, dtype=np.float64)
    if p_clean.ndim != 1 or not ((0.0 <= p_clean) & (p_clean <= 1.0)).all():
        raise ValueError(f"p_clean must be (N,) values in [0, 1], got shape {p_clean.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return 1.0 - strength * (1.0 - alpha) * (1.0 - p_clean)


def estimated_noise_share(p_clean: np.ndarray) -> float:
    """The share of labels the mixture takes for noisy, ``1 - mean(p_clean)`` in [0, 1]: about
    0.27 / 0.47 / 0.73 at the first fit of Fashion-MNIST 20k with 18 / 45 / 72 % wrong labels
    (symmetric 20 / 50 / 80 %); the mixture misses most labels flipped into one fixed class."""
    p_clean = np.asarray(p_clean, dtype=np.float64)
    if p_clean.size == 0:
        raise ValueError("p_clean is empty")
    return float(1.0 - p_clean.mean())


def noise_odds_strength(share: float) -> float:
    """Strength of the training correction from an estimated share of noisy labels (the
    mixture's ``estimated_noise_share``, or ``confident_learning.confident_joint_noise_share``
    under config ``noise_estimate="confident_joint"``): the odds that a label is noisy,
    ``share / (1 - share)``, capped at 1. Full strength from half the labels noisy; about a third at 20 % symmetric
    noise, where correcting the training labels cost held-out accuracy (BENCHMARKS.md, thirteenth
    and fourteenth passes). The trainer reads it once, from the fit before the first correction:
    later fits see the corrected labels, and a strength that fell as the correction worked cost
    0.4 points on the clean judge at 80 % noise."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return 1.0 if share >= 0.5 else share / (1.0 - share)


def suggestion_soft_labels(soft_labels: np.ndarray, given_labels: np.ndarray, given_share: float,
                           suggestion_share: float) -> np.ndarray:
    """Soft labels to suggest from: the training soft labels with the given label's share cut
    from ``given_share`` to ``suggestion_share``.

    After n corrections with momentum alpha from a one-hot given label y, a soft label is
    ``t = alpha^n y + (1 - alpha^n) qbar`` where qbar is the weighted average of the predictions
    the corrections used (weights summing to 1). Training keeps a large share of y (``given_share``
    = alpha^n) so the model does not learn its own early mistakes; the suggestion needs only a
    tie-breaker's share of it, so this returns ``s y + (1 - s) qbar`` with
    s = min(given_share, suggestion_share). Rows stay in the simplex; with no correction yet
    (``given_share`` 1) the soft labels come back unchanged.
    """
    soft_labels = np.asarray(soft_labels, dtype=np.float64)
    share = min(given_share, suggestion_share)
    if given_share >= 1.0 or share == given_share:
        return soft_labels.astype(np.float32)
    given = np.eye(soft_labels.shape[1])[np.asarray(given_labels, dtype=np.int64)]
    averaged = np.clip((soft_labels - given_share * given) / (1.0 - given_share), 0.0, None)
    averaged /= averaged.sum(axis=1, keepdims=True)
    return (share * given + (1.0 - share) * averaged).astype(np.float32)
