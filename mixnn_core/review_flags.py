"""Which given labels to flag for a person to review, from each label's probability of being wrong.

Flagging a label bets that it is wrong. With calibrated probabilities p_i that label i is wrong,
flagging the n likeliest has an expected F1 of about ``2 * (p_1 + ... + p_n) / (n + sum_i p_i)``
(expected right flags over the mean of the flagged count and the expected wrong count). The n
that maximises it flags every label whose p_i exceeds half the F1 it reaches, so a label more
likely wrong than right is always flagged, and when the run can tell wrong labels well so are
some a little less likely (the F1-optimal threshold is F*/2; Lipton, Elkan & Narayanaswamy 2014).
No parameter. A mixnn run flags by the posterior of ``label_posterior``; measured in
BENCHMARKS.md, thirty-ninth pass.
"""

from __future__ import annotations

import numpy as np


def _wrong_probability(wrong_probability: np.ndarray) -> np.ndarray:
    wrong = np.asarray(wrong_probability, dtype=np.float64)
    if wrong.ndim != 1:
        raise ValueError(f"wrong_probability must be one probability per label (N,), got shape {wrong.shape}")
    if wrong.size and not (np.isfinite(wrong).all() and wrong.min() >= 0.0 and wrong.max() <= 1.0):
        raise ValueError("wrong_probability must lie in [0, 1]")
    return wrong


def _expected_f1_of_descending(wrong: np.ndarray) -> np.ndarray:
    total = wrong.sum()
    if total == 0:
        return np.zeros(wrong.size)
    return 2.0 * np.cumsum(wrong) / (np.arange(1, wrong.size + 1) + total)


def expected_f1(wrong_probability: np.ndarray) -> np.ndarray:
    """Expected F1 (N,) of flagging the n labels likeliest wrong, n = 1 .. N, when label i is
    wrong with probability ``wrong_probability[i]``; all 0 when no label can be wrong."""
    return _expected_f1_of_descending(np.sort(_wrong_probability(wrong_probability))[::-1])


def flag_cut(wrong_probability: np.ndarray) -> float:
    """The smallest probability of being wrong among the labels whose flagging maximises the
    expected F1 (``expected_f1``): flag a label when its probability reaches it. Infinite (flag
    nothing) when there is no label or none can be wrong."""
    descending = np.sort(_wrong_probability(wrong_probability))[::-1]
    scores = _expected_f1_of_descending(descending)
    if scores.size == 0 or scores.max() == 0:
        return float("inf")
    return float(descending[int(np.argmax(scores))])


def review_flags(wrong_probability: np.ndarray, cut: float) -> np.ndarray:
    """Flags (N,): the labels whose probability of being wrong reaches ``cut`` (``flag_cut`` of
    these labels, or of the training run's for new samples)."""
    return _wrong_probability(wrong_probability) >= cut
