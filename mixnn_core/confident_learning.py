"""Which given labels to change: confident learning's count of wrong labels per class pair.

A run's soft labels say, for every sample, how likely each class is. Changing every label whose
soft label prefers another class trusts those probabilities blindly: a model weaker than the
labels (CIFAR-10N at 20 epochs) then "corrects" more right labels than wrong ones. Confident
learning (Northcutt, Jiang & Chuang, JAIR 2021; cleanlab's ``find_label_issues`` with
``filter_by="prune_by_noise_rate"``) first estimates HOW MANY labels of each given class j truly
belong to each other class k, from the samples that reach class k's average confidence, and
then marks only that many: the samples of given class j with the largest margin
``probs[k] - probs[j]``. The same algorithm as cleanlab's, written here because cleanlab is a
benchmark-only dependency; ``tests/test_confident_learning.py`` checks the two agree.
"""

from __future__ import annotations

import numpy as np

# cleanlab's tolerance when comparing probabilities with thresholds and with each other.
TOLERANCE = 1e-6
# noise_concentration below which the noise reads as symmetric: first fits of Fashion-MNIST 20k
# read 0.12-0.40 under symmetric noise (5-fold included), 0.71-0.80 under flips; CIFAR-10N's human
# noise 0.36 / 0.45 (BENCHMARKS.md thirty-first pass)
SYMMETRIC_NOISE_CONCENTRATION = 0.5


def noise_kind(concentration: float) -> str:
    """How a ``noise_concentration`` reads the noise: "symmetric" (below
    SYMMETRIC_NOISE_CONCENTRATION: the contradicted labels spread over the classes) or "flips"
    (at or above it: mostly into particular other classes)."""
    return "symmetric" if concentration < SYMMETRIC_NOISE_CONCENTRATION else "flips"


def checked_probs(given_labels: np.ndarray, probs: np.ndarray,
                  name: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    """Given labels (N,) int64 and class probabilities (N, C) float64; a ValueError naming
    ``name`` unless the shapes agree, or naming the given labels outside [0, C)."""
    given = np.asarray(given_labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != given.shape[0]:
        raise ValueError(f"{name} must be (N, C) with N = {given.shape[0]}, got {probs.shape}")
    if given.size and (given.min() < 0 or given.max() >= probs.shape[1]):
        raise ValueError(f"given labels must lie in [0, {probs.shape[1]})")
    return given, probs


def confident_thresholds(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class k (C,): the mean probability of k over the samples given label k; a class
    nobody was given gets 2 (never reached). A sample is confidently of class k when
    ``probs[k]`` reaches this average."""
    given, probs = checked_probs(given_labels, probs)
    classes = probs.shape[1]
    return np.array([probs[given == k, k].mean() if (given == k).any() else 2.0 for k in range(classes)])


def round_preserving_row_sums(counts: np.ndarray) -> np.ndarray:
    """Integer matrix whose rows sum to the rounded row sums of ``counts``: each entry rounded,
    then the rows off by d moved by one unit at d of their entries, largest remainders first."""
    counts = np.asarray(counts, dtype=np.float64)
    rounded = np.round(counts)
    for row in range(counts.shape[0]):
        missing = int(np.round(counts[row].sum() - rounded[row].sum()))
        if missing:
            remainder = (counts[row] - rounded[row]) * np.sign(missing)
            rounded[row, np.argsort(-remainder, kind="stable")[:abs(missing)]] += np.sign(missing)
    return rounded.astype(np.int64)


def confident_joint(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Estimated counts (C, C) of samples given label j (row) whose true class is k (column).

    Each sample that reaches at least one class's confident threshold is counted under that
    class (under its argmax when it reaches several); the diagonal is at least 1; then each
    row is scaled to the number of samples given that label and the whole to N, and rounded
    keeping the row sums.
    """
    given, probs = checked_probs(given_labels, probs)
    classes = probs.shape[1]
    confident = probs >= confident_thresholds(given, probs) - TOLERANCE
    n_confident = confident.sum(axis=1)
    true_guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    joint = np.zeros((classes, classes))
    np.add.at(joint, (given[counted], true_guess[counted]), 1.0)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1.0))
    label_counts = np.bincount(given, minlength=classes)
    joint = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-6) * label_counts[:, None]
    joint = joint / max(joint.sum(), 1e-6) * label_counts.sum()
    return round_preserving_row_sums(joint)


def confident_joint_noise_share(given_labels: np.ndarray, probs: np.ndarray) -> float:
    """The share of labels ``confident_joint`` puts off its diagonal (given label j, estimated
    true class k != j): a noise level read from the predictions, on no loss scale. It over-read
    the first fits of Fashion-MNIST 20k by 0.05-0.08 (0.25 / 0.53 / 0.78 / 0.24 / 0.49 at sym 20 /
    50 / 80, asym 40, pair-flip 45 with 0.18 / 0.45 / 0.73 / 0.20 / 0.44 wrong)."""
    joint = confident_joint(given_labels, probs)
    return float(1.0 - np.trace(joint) / max(joint.sum(), 1))


def noise_concentration(given_labels: np.ndarray, probs: np.ndarray) -> float:
    """How unevenly ``confident_joint``'s off-diagonal counts fall: the share of them above an
    even spread of each given class's off-diagonal count over its C - 1 other classes.

    0 when every class's apparent mistakes spread evenly over the other classes (labels
    replaced at random: symmetric noise); (C - 2) / (C - 1), its largest, when each class's go
    to one other class (flips between similar classes); 0 too when nothing is off the
    diagonal. First fits of
    Fashion-MNIST 20k (BENCHMARKS.md thirty-first pass): 0.21 / 0.12 / 0.23 at symmetric 20 /
    50 / 80 %, 0.80 at asymmetric 40 %, 0.71 at pair-flip 45 %."""
    joint = confident_joint(given_labels, probs).astype(np.float64)
    np.fill_diagonal(joint, 0.0)
    off_diagonal = joint.sum()
    if off_diagonal == 0:
        return 0.0
    even = joint.sum(axis=1, keepdims=True) / (joint.shape[1] - 1)
    above = np.clip(joint - even, 0.0, None)
    np.fill_diagonal(above, 0.0)
    return float(above.sum() / off_diagonal)


def label_issues(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask (N,): the given labels confident learning calls wrong.

    For every pair (given j, true k != j) of ``confident_joint``, its count of samples given j
    with the largest ``probs[k] - probs[j]`` are marked; a sample whose given label is (within
    ``TOLERANCE``) its most likely class is never marked. ``probs`` (N, C) are any per-sample
    class probabilities: here the run's suggestion soft labels.
    """
    given, probs = checked_probs(given_labels, probs)
    joint = confident_joint(given, probs)
    issues = np.zeros(given.shape[0], dtype=bool)
    for j in range(probs.shape[1]):
        rows = np.flatnonzero(given == j)
        if rows.size <= 1:  # cleanlab keeps at least one sample per class
            continue
        for k in range(probs.shape[1]):
            if k != j and joint[j, k] > 0:
                margin = probs[rows, k] - probs[rows, j]
                issues[rows[np.argsort(-margin, kind="stable")[:joint[j, k]]]] = True
    boosted = probs.copy()
    boosted[np.arange(given.shape[0]), given] += TOLERANCE
    issues &= boosted.argmax(axis=1) != given
    return issues


def counted_suggestions(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The given labels (N,) with those ``label_issues`` calls wrong replaced by the argmax of
    ``probs``: a suggestion that changes only as many labels as confident learning counts."""
    given, probs = checked_probs(given_labels, probs)
    return np.where(label_issues(given, probs), probs.argmax(axis=1), given)
