"""Label correction (step 7 of the method): soft labels follow the model's predictions."""

from __future__ import annotations

import numpy as np


def ema_update(soft_labels: np.ndarray, probs: np.ndarray, alpha: float = 0.9) -> np.ndarray:
    """New soft labels ``alpha * soft_labels + (1 - alpha) * probs``.

    ``soft_labels`` (N, C) are the running label estimates t_i (rows in the simplex),
    ``probs`` (N, C) the model's softmax predictions q_i. ``alpha`` is the momentum: at 0.9 each
    update moves a soft label 10 % of the way toward the prediction. Rows stay in the simplex.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft_labels = np.asarray(soft_labels)
    probs = np.asarray(probs)
    if soft_labels.shape != probs.shape:
        raise ValueError(f"soft_labels {soft_labels.shape} and probs {probs.shape} differ in shape")
    return alpha * soft_labels + (1.0 - alpha) * probs


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
