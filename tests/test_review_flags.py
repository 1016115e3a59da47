"""Which labels to flag: the expected-F1 cut over each label's probability of being wrong."""

from __future__ import annotations

import numpy as np
import pytest

from mixnn_core.metrics import detection_scores
from mixnn_core.review_flags import expected_f1, flag_cut, review_flags


def test_expected_f1_of_flagging_the_likeliest_wrong_first():
    wrong = np.array([0.1, 0.9, 0.0, 0.8])
    # total 1.8; the top 1, 2, 3, 4: 2 * (0.9, 1.7, 1.8, 1.8) / (1 + 1.8, 2 + 1.8, 3 + 1.8, 4 + 1.8)
    np.testing.assert_allclose(expected_f1(wrong), [1.8 / 2.8, 3.4 / 3.8, 3.6 / 4.8, 3.6 / 5.8])
    assert flag_cut(wrong) == 0.8
    assert review_flags(wrong, flag_cut(wrong)).tolist() == [False, True, False, True]


def test_a_label_more_likely_wrong_than_right_is_always_flagged():
    rng = np.random.default_rng(0)
    for _ in range(50):
        wrong = rng.beta(0.3, rng.uniform(0.3, 3.0), rng.integers(1, 300))
        flags = review_flags(wrong, flag_cut(wrong))
        assert flags[wrong > 0.5].all()
        assert flags.any() == (wrong.sum() > 0)


@pytest.mark.parametrize("a, b", [(0.3, 1.5), (0.5, 4.0), (1.0, 1.0)])
def test_on_calibrated_probabilities_the_cut_nearly_reaches_the_best_threshold(a, b):
    """When labels are wrong with exactly their probabilities, the expected-F1 flags score within
    0.01 of the best threshold found afterwards with the truth, and no lower than flagging
    every label more likely wrong than right."""
    rng = np.random.default_rng(1)
    wrong = rng.beta(a, b, 20000)
    is_wrong = rng.random(20000) < wrong
    realised = detection_scores(review_flags(wrong, flag_cut(wrong)), is_wrong)["f1"]
    best = max(detection_scores(wrong >= t, is_wrong)["f1"] for t in np.linspace(0.01, 0.99, 99))
    assert realised > best - 0.01
    assert realised >= detection_scores(wrong > 0.5, is_wrong)["f1"] - 0.002


def test_nothing_is_flagged_when_no_label_can_be_wrong():
    assert flag_cut(np.zeros(5)) == float("inf") and not review_flags(np.zeros(5), flag_cut(np.zeros(5))).any()
    assert flag_cut(np.array([])) == float("inf")


def test_bad_probabilities_are_refused_naming_the_argument():
    for bad in (np.array([0.2, 1.5]), np.array([0.2, np.nan]), np.array([-0.1, 0.5])):
        with pytest.raises(ValueError, match=r"wrong_probability must lie in \[0, 1\]"):
            flag_cut(bad)
    with pytest.raises(ValueError, match="one probability per label"):
        review_flags(np.zeros((2, 2)), 0.5)
