"""Mixing each sample with its nearest neighbours (steps 4-6 of the method).

A sample i and its K neighbours form the set S_i = {i} + neighbours. Each member j gets a
weight proportional to its clean probability p_j, so a noisy sample hands its weight to clean
neighbours (``mixing_weights``, the method); or the sample keeps the share p_i of its own
synthetic sample and its neighbours split the rest by their clean probabilities
(``replacement_weights``), so a clean sample stays itself and only noisy ones are replaced.
The synthetic sample is the weighted sum of the members' inputs, its soft label the weighted
sum of their soft labels, and the loss is the soft-label cross-entropy on the synthetic samples
only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Added to the sample's own clean probability, so that a set whose members all look noisy
# (every p near 0) still has weights summing to 1, with the sample keeping its own weight.
SELF_WEIGHT_EPSILON = 1e-6


def mixing_weights(p_clean: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """Weights (N, K + 1) of each sample (column 0) and its K neighbours (columns 1..K).

    ``p_clean`` (N,) are the clean probabilities in [0, 1]; ``neighbors`` (N, K) the neighbour
    indices (excluding the sample itself). Each row sums to 1 and is proportional to the
    members' clean probabilities: w_ij = p_j / sum_{k in S_i} p_k, with ``SELF_WEIGHT_EPSILON``
    added to the sample's own p so that rows of all-zero probabilities give the sample weight 1.
    """
    p_clean, neighbors = _checked(p_clean, neighbors)
    members = np.concatenate([p_clean[:, None] + SELF_WEIGHT_EPSILON, p_clean[neighbors]], axis=1)
    return members / members.sum(axis=1, keepdims=True)


def replacement_weights(p_clean: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """Weights (N, K + 1) in which sample i keeps the share p_i of its synthetic sample.

    Column 0 is p_i; the neighbours (columns 1..K) share 1 - p_i in proportion to their clean
    probabilities (equally when all of theirs are 0). Two clean samples: about (1, 0), the clean
    sample trains almost un-mixed, where ``mixing_weights`` blends it evenly with its
    neighbour; a noisy sample with a clean neighbour: about (0, 1), as in ``mixing_weights``.
    Inputs as in ``mixing_weights``; each row sums to 1.
    """
    p_clean, neighbors = _checked(p_clean, neighbors)
    shares = p_clean[neighbors] + SELF_WEIGHT_EPSILON
    shares /= shares.sum(axis=1, keepdims=True)
    return np.concatenate([p_clean[:, None], (1.0 - p_clean)[:, None] * shares], axis=1)


def scaled_neighbor_share(weights: np.ndarray, strength: float) -> np.ndarray:
    """Weights (N, K + 1) with the neighbours' share of each row scaled by ``strength`` in
    [0, 1] and the rest handed back to the sample itself (column 0).

    ``strength`` 1 returns ``weights``; 0 trains every sample un-mixed on its own soft label.
    With the odds of noise the mixture sees (``correction.noise_odds_strength``) a run mixes
    little where it finds little noise: about 0.4 of each neighbour share at 20 % symmetric noise.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    scaled = strength * weights
    scaled[:, 0] += 1.0 - strength
    return scaled


def _checked(p_clean: np.ndarray, neighbors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``p_clean`` as float64 and ``neighbors`` as an array, after the checks both weightings need."""
    p_clean = np.asarray(p_clean, dtype=np.float64)
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2 or neighbors.shape[0] != p_clean.shape[0]:
        raise ValueError(f"neighbors must be (N, K) with N = {p_clean.shape[0]}, "
                         f"got {neighbors.shape}")
    if neighbors.size and (neighbors.min() < 0 or neighbors.max() >= p_clean.shape[0]):
        raise ValueError("neighbors hold indices outside [0, N)")
    if np.any((p_clean < 0) | (p_clean > 1)) or not np.all(np.isfinite(p_clean)):
        raise ValueError("p_clean must be finite and within [0, 1]")
    return p_clean, neighbors


def mix_batch(inputs: torch.Tensor, soft_labels: torch.Tensor,
              weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic samples and their soft labels from weighted members.

    ``inputs`` (B, M, *shape) holds the M members of each of B sets (augmented, normalised),
    ``soft_labels`` (B, M, C) their soft labels, ``weights`` (B, M) rows summing to 1.
    Returns ``x~ = sum_j w_j x_j`` (B, *shape) and ``y~ = sum_j w_j t_j`` (B, C).
    Used both for nearest-neighbour mixing (M = K + 1) and for random-pair mixup (M = 2).
    """
    w = weights.to(inputs.dtype)
    mixed_inputs = (inputs * w.view(*w.shape, *([1] * (inputs.dim() - 2)))).sum(dim=1)
    mixed_labels = (soft_labels * w.unsqueeze(-1)).sum(dim=1)
    return mixed_inputs, mixed_labels


def smoothed_targets(targets: torch.Tensor, share: float) -> torch.Tensor:
    """Targets (B, C) with ``share`` of each row's mass spread evenly over the C classes:
    ``(1 - share) * targets + share / C``. Rows that sum to 1 still do; ``share`` 0 returns
    ``targets``."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if share == 0.0:
        return targets
    return (1.0 - share) * targets + share / targets.shape[1]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``-sum_c targets[c] * log softmax(logits)[c]``, each row's term
    multiplied by ``sample_weights`` (B,) when given."""
    losses = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    if sample_weights is not None:
        losses = losses * sample_weights
    return losses.mean()
