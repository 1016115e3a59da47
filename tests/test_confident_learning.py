"""Confident learning's label issues: by hand, and against cleanlab itself (a bench dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from mixnn_core.confident_learning import (
    confident_joint,
    confident_joint_noise_share,
    confident_thresholds,
    label_issues,
    noise_concentration,
    round_preserving_row_sums,
)


def noisy_problem(seed: int, n: int = 600, classes: int = 4, wrong: float = 0.3, flip_to_next: bool = False):
    """Given labels with a share ``wrong`` changed (at random, or to the next class), and
    probabilities that mostly favour the true class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    changed = rng.random(n) < wrong
    other = (true + 1) % classes if flip_to_next else (true + rng.integers(1, classes, n)) % classes
    given = np.where(changed, other, true)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), true] += rng.uniform(0.5, 3.0, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return given, true, probs


def test_noise_share_counts_the_labels_predictions_contradict():
    true = np.repeat(np.arange(4), 25)
    given = true.copy()
    given[::5] = (true[::5] + 1) % 4  # every fifth label moved to the next class
    probs = np.full((100, 4), 0.1)
    probs[np.arange(100), true] = 0.7  # predictions that know the true class
    assert confident_joint_noise_share(given, probs) == pytest.approx(0.2)
    assert confident_joint_noise_share(true, probs) == 0.0
    # predictions that follow the given labels see no noise: the share reads the predictions
    assert confident_joint_noise_share(given, np.eye(4)[given] * 0.7 + 0.075) == 0.0


def test_noise_concentration_tells_random_labels_from_flips():
    """Labels changed at random spread their off-diagonal counts evenly (concentration near 0);
    labels moved to the next class put them in one cell per row (near 1), as long as the
    model's own mistakes, which spread evenly here, are fewer than the flips."""
    def concentration(seed, flip_to_next):
        given, true, _ = noisy_problem(seed, 3000, 10, 0.3, flip_to_next)
        rng = np.random.default_rng(seed)
        logits = rng.normal(0, 1, (3000, 10))
        logits[np.arange(3000), true] += 4.0  # the model right on about 95 %
        return noise_concentration(given, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))

    assert max(concentration(seed, False) for seed in range(3)) < 0.25
    assert min(concentration(seed, True) for seed in range(3)) > 0.75
    # by hand: class 0's three mistakes all in class 1 (2 of them above an even 1 per class), class
    # 1's spread one to each other class (none above)
    joint_rows = [(0, 0)] * 5 + [(0, 1)] * 3 + [(1, 1)] * 5 + [(1, 0), (1, 2), (1, 3)] + [(2, 2)] * 5 + [(3, 3)] * 5
    given, predicted = np.array(joint_rows).T
    probs = np.eye(4)[predicted] * 0.9 + 0.025
    assert confident_joint(given, probs)[:2].tolist() == [[5, 3, 0, 0], [1, 5, 1, 1]]
    assert noise_concentration(given, probs) == pytest.approx(2 / 6)
    assert noise_concentration(predicted, probs) == 0.0  # nothing off the diagonal


def test_thresholds_and_joint_by_hand():
    """Thresholds 0.6 (class 0) and 0.8 (class 1). Sample 2 (given 0) reaches class 1's, sample
    5 reaches none: the joint counts [[2, 1], [0, 2]], row 1 is rescaled to its 3 samples."""
    given = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    np.testing.assert_allclose(confident_thresholds(given, probs), [0.6, 0.8])
    np.testing.assert_array_equal(confident_joint(given, probs), [[2, 1], [0, 3]])
    assert label_issues(given, probs).tolist() == [False, False, True, False, False, False]


def test_a_class_nobody_was_given_is_never_reached():
    given = np.array([0, 0, 1])
    probs = np.array([[0.5, 0.2, 0.3], [0.6, 0.1, 0.3], [0.1, 0.8, 0.1]])
    assert confident_thresholds(given, probs)[2] == 2.0


def test_rounding_keeps_every_row_sum():
    counts = np.array([[0.5, 0.5, 1.0], [1.4, 1.4, 1.2], [2.6, 0.2, 0.2]])
    rounded = round_preserving_row_sums(counts)
    assert rounded.dtype == np.int64
    np.testing.assert_array_equal(rounded.sum(axis=1), np.round(counts.sum(axis=1)))
    assert np.abs(rounded - counts).max() < 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("flip_to_next", [False, True])
def test_label_issues_equal_cleanlabs_prune_by_noise_rate(seed, flip_to_next):
    filter_module = pytest.importorskip("cleanlab.filter", reason="cleanlab is installed with bench/requirements.txt")
    given, _, probs = noisy_problem(seed, flip_to_next=flip_to_next)
    expected = filter_module.find_label_issues(given, probs, filter_by="prune_by_noise_rate")
    np.testing.assert_array_equal(label_issues(given, probs), expected)


def test_issues_are_more_precise_than_every_disagreement_and_never_the_predicted_ones():
    given, true, probs = noisy_problem(0, n=2000)
    issues = label_issues(given, probs)
    disagreements = probs.argmax(axis=1) != given
    assert (given[issues] != true[issues]).mean() > (given[disagreements] != true[disagreements]).mean() + 0.05
    assert (issues[given != true]).mean() > 0.5  # recall
    assert not issues[~disagreements].any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="probs must be"):
        label_issues(np.array([0, 1]), np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="given labels"):
        label_issues(np.array([0, 2]), np.ones((2, 2)) / 2)
