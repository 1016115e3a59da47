"""Clean probability of each sample from its training loss (step 2 of the method).

Early in training a network fits clean samples before it memorises wrong labels, so per-sample
losses form two modes: low (clean labels) and high (wrong labels). A two-component 1-D Gaussian
mixture over the min-max normalised losses gives each sample the posterior probability of the
low-mean component: ``p_clean``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture

from mixnn_core.config import MIXTURE_SCALES

# Reference settings of the authors' code: few EM steps, loose tolerance, some covariance floor.
GMM_MAX_ITER = 10
GMM_TOL = 1e-2
GMM_REG_COVAR = 5e-4


@dataclass(frozen=True)
class MixtureFit:
    """A fitted two-component mixture, components ordered clean (lower mean) first."""

    p_clean: np.ndarray  # (N,) posterior of the clean component, in [0, 1]
    normalized_losses: np.ndarray  # (N,) the mixture's input, in [0, 1]
    means: tuple[float, float]
    variances: tuple[float, float]
    weights: tuple[float, float]


def normalize_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max normalise losses to [0, 1]; a constant input maps to all zeros."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D array, got shape {losses.shape}")
    if not np.all(np.isfinite(losses)):
        bad = np.flatnonzero(~np.isfinite(losses))
        raise ValueError(f"losses contain {bad.size} non-finite values (first at sample {bad[0]})")
    low, high = losses.min(), losses.max()
    span = high - low
    if span <= 0:
        return np.zeros_like(losses)
    return (losses - low) / span


def mixture_input(losses: np.ndarray, scale: str = "linear") -> np.ndarray:
    """The losses as the mixture sees them: min-max normalised to [0, 1] on their own scale
    ("linear", the method) or as log(1 + loss) ("log").

    Min-max scaling lets the largest losses set the range. When about 1 % of the samples are
    confident mistakes (losses 10-20, most others below 3), everything else is squashed toward
    0 and the second component fits that tail instead of the noisy labels: on 40 % noisy
    synthetic cross-entropy losses it took 3 % for noisy (log: 36 %). The first fit after a
    CIFAR-10N warm-up read 1 % noisy at 40 % wrong (BENCHMARKS.md, sixteenth pass).
    """
    if scale not in MIXTURE_SCALES:
        raise ValueError(f"scale must be one of {MIXTURE_SCALES}, got {scale!r}")
    losses = np.asarray(losses, dtype=np.float64)
    if scale == "log":
        if losses.size and losses.min() < 0:
            raise ValueError(f"log scale needs losses >= 0, got {losses.min()}")
        losses = np.log1p(losses)
    return normalize_losses(losses)


def fit_mixture(normalized_losses: np.ndarray, seed: int = 0) -> MixtureFit:
    """Fit the two-component mixture to already normalised losses.

    When the losses carry no information (all equal, or too few samples to fit two
    components) every sample gets ``p_clean = 1``: nothing suggests any label is wrong.
    """
    x = np.asarray(normalized_losses, dtype=np.float64)
    if x.size < 2 or np.ptp(x) <= 0:
        return MixtureFit(np.ones_like(x), x, (float(x.mean()), float(x.mean())),
                          (0.0, 0.0), (1.0, 0.0))
    gmm = GaussianMixture(n_components=2, max_iter=GMM_MAX_ITER, tol=GMM_TOL,
                          reg_covar=GMM_REG_COVAR, random_state=seed)
    gmm.fit(x.reshape(-1, 1))
    means = gmm.means_.ravel()
    order = np.argsort(means)
    clean = order[0]
    posterior = gmm.predict_proba(x.reshape(-1, 1))[:, clean]
    variances = gmm.covariances_.ravel()
    return MixtureFit(
        p_clean=np.clip(posterior, 0.0, 1.0),
        normalized_losses=x,
        means=(float(means[order[0]]), float(means[order[1]])),
        variances=(float(variances[order[0]]), float(variances[order[1]])),
        weights=(float(gmm.weights_[order[0]]), float(gmm.weights_[order[1]])),
    )


def clean_probability(losses: np.ndarray, seed: int = 0) -> np.ndarray:
    """Probability, per sample, that its label is clean (higher = more likely clean).

    ``losses`` are per-sample training losses (e.g. cross-entropy against the current label).
    They are min-max normalised, a two-component Gaussian mixture is fitted with a fixed
    ``seed``, and the posterior of the lower-mean component is returned, in [0, 1].
    """
    return fit_mixture(normalize_losses(losses), seed=seed).p_clean


def fit_mixture_per_class(normalized_losses: np.ndarray, labels: np.ndarray,
                          seed: int = 0) -> MixtureFit:
    """One two-component mixture per class of ``labels`` (the labels the losses were taken against).

    Classes differ in how hard they are: under a single mixture every sample of a hard class
    (high losses, clean or not) looks noisy. Here each class's losses are min-max normalised
    and fitted on their own, so ``p_clean`` says how clean a sample looks among its class.
    The returned means, variances and weights are the class-size-weighted averages of the
    per-class fits; ``normalized_losses`` are the within-class normalised values.
    """
    x = np.asarray(normalized_losses, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != x.shape:
        raise ValueError(f"labels {labels.shape} and losses {x.shape} differ in shape")
    p_clean = np.ones_like(x)
    within = np.zeros_like(x)
    summary = np.zeros((3, 2))
    for label in np.unique(labels):
        rows = labels == label
        fit = fit_mixture(normalize_losses(x[rows]), seed=seed)
        p_clean[rows], within[rows] = fit.p_clean, fit.normalized_losses
        summary += rows.mean() * np.array([fit.means, fit.variances, fit.weights])
    return MixtureFit(p_clean, within, *(tuple(float(v) for v in row) for row in summary))
