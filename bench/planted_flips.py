"""A detection score without clean labels: flip a known share of the training labels, then
score how many of those flips a run flags and sends back.

Held-out noisy labels rank models by accuracy, but not by how well they flag wrong labels, so a
held-out choice cannot weigh an option that trades one for the other (BENCHMARKS.md forty-third
pass: under asymmetric 40 % the floored p_clean held out level on accuracy and lost detection F1
on the test labels). Here a share of the (already noisy) training labels is flipped on
purpose, each to a class drawn the way the setting's own noise moves labels: P(new label j |
label g) in proportion to the confident joint's count of samples given j whose true class is g,
estimated by plain training out of fold (``bench/tune.py``'s reference). The flipped rows are
known wrong; the rows the reference keeps and nobody flipped stand for the right ones. The
run's flags, ``label_quality`` and suggestions are scored on those two groups, as the suite
scores them on the true labels: detection precision / recall / F1 and AUROC, and the share of
flipped rows suggested back to their label before the flip.
"""

from __future__ import annotations

import numpy as np

from mixnn_core.metrics import label_quality_metrics
from mixnn_core.noise import draw_from_rows


def flip_transition(joint: np.ndarray) -> np.ndarray:
    """(C, C) matrix, row g: the probability that a label g is flipped to each class j, in
    proportion to ``joint[j, g]`` (counts of given j, true class g; ``confident_joint``) off the
    diagonal; uniform over the other classes where the joint saw no sample of g given another
    label."""
    joint = np.asarray(joint, dtype=np.float64)
    if joint.ndim != 2 or joint.shape[0] != joint.shape[1] or joint.shape[0] < 2 or (joint < 0).any():
        raise ValueError(f"joint must be a (C, C) matrix of counts, C >= 2, got shape {joint.shape}")
    off_diagonal = joint.T * (1.0 - np.eye(joint.shape[0]))
    totals = off_diagonal.sum(axis=1, keepdims=True)
    uniform = (1.0 - np.eye(joint.shape[0])) / (joint.shape[0] - 1)
    return np.where(totals > 0, off_diagonal / np.where(totals > 0, totals, 1.0), uniform)


def plant_flips(labels: np.ndarray, share: float, joint: np.ndarray,
                seed: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (N,) with round(``share`` N) of them, drawn without replacement, flipped along
    ``flip_transition(joint)``; returns the new labels and which rows were flipped (bool, N).
    Every flipped label differs from its old one."""
    labels = np.asarray(labels, dtype=np.int64)
    if not 0 < share < 1:
        raise ValueError(f"share of labels to flip must be in (0, 1), got {share}")
    transition = flip_transition(joint)
    if labels.size and (labels.min() < 0 or labels.max() >= transition.shape[0]):
        raise ValueError(f"labels must lie in [0, {transition.shape[0]}) to follow the joint")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(labels.size, size=round(share * labels.size), replace=False))
    flipped = labels.copy()
    flipped[chosen] = draw_from_rows(labels[chosen], transition, rng)
    planted = np.zeros(labels.size, dtype=bool)
    planted[chosen] = True
    return flipped, planted


def planted_flip_scores(labels_before: np.ndarray, labels_trained: np.ndarray, planted: np.ndarray,
                        kept: np.ndarray, suggested: np.ndarray, label_quality: np.ndarray,
                        is_label_issue: np.ndarray) -> dict:
    """A run's detection on known flips: ``label_quality_metrics`` over the ``planted`` rows
    (given ``labels_trained``, wrong by construction) and the rows the reference ``kept`` that
    were not planted (taken as right), with ``labels_before`` as the truth; plus
    ``planted_recovery``, the share of planted rows suggested back to their label before the
    flip, and the group sizes. All arrays (N,), one entry per training row of the run (rows of
    several runs may be concatenated)."""
    planted = np.asarray(planted, dtype=bool)
    scored = planted | np.asarray(kept, dtype=bool)
    if not planted.any() or planted.all():
        raise ValueError("planted_flip_scores needs planted rows and unplanted kept rows")
    columns = (labels_trained, suggested, label_quality, is_label_issue, labels_before)
    metrics = label_quality_metrics(*(np.asarray(column)[scored] for column in columns))
    suggested_back = np.asarray(suggested)[planted] == np.asarray(labels_before)[planted]
    return {**metrics, "planted_recovery": float(suggested_back.mean()), "n_planted": int(planted.sum()),
            "n_kept_unplanted": int((scored & ~planted).sum())}
