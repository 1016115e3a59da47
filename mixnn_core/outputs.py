"""Per-sample outputs of a run: what the tool says about each training label.

``label_quality`` is the estimated probability that the GIVEN label is correct: the mass the
final soft label puts on the given class (for ``mixnn``, the label-corrected running estimate;
for ``ce`` / ``mixup``, the model's final prediction). It is not the mixture's clean
probability, which is fitted against the corrected labels and says nothing about the given
label once they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A given label is flagged when it is estimated more likely wrong than right.
LABEL_ISSUE_THRESHOLD = 0.5


@dataclass(frozen=True)
class SampleOutputs:
    given_label: np.ndarray  # (N,) int64
    suggested_label: np.ndarray  # (N,) int64, argmax of the soft label
    suggested_confidence: np.ndarray  # (N,) max of the soft label
    soft_label: np.ndarray  # (N, C) float32, rows in the simplex
    label_quality: np.ndarray  # (N,) soft_label[i, given_label[i]]
    is_label_issue: np.ndarray  # (N,) bool, label_quality < LABEL_ISSUE_THRESHOLD
    p_clean: np.ndarray  # (N,) the last mixture fit's clean probability (1 where never fitted)


def sample_outputs(given_labels: np.ndarray, soft_labels: np.ndarray,
                   p_clean: np.ndarray) -> SampleOutputs:
    """Suggested label, confidence, label quality and issue flag of every sample."""
    given = np.asarray(given_labels, dtype=np.int64)
    soft = np.asarray(soft_labels, dtype=np.float32)
    if soft.ndim != 2 or soft.shape[0] != given.shape[0]:
        raise ValueError(f"soft_labels must be (N, C) with N = {given.shape[0]}, got {soft.shape}")
    rows = np.arange(given.shape[0])
    quality = soft[rows, given].astype(np.float64).clip(0.0, 1.0)
    return SampleOutputs(
        given_label=given,
        suggested_label=soft.argmax(axis=1).astype(np.int64),
        suggested_confidence=soft.max(axis=1).astype(np.float64),
        soft_label=soft,
        label_quality=quality,
        is_label_issue=quality < LABEL_ISSUE_THRESHOLD,
        p_clean=np.asarray(p_clean, dtype=np.float64),
    )
