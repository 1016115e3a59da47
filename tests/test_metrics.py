import json
import math
import warnings

import numpy as np
import pytest

from mixnn_core import metrics


def test_test_accuracy_summary_reports_last_and_best():
    summary = metrics.test_accuracy_summary([0.50, 0.71, 0.69, 0.71, 0.65])
    assert summary == {"test_acc_last": 0.65, "test_acc_best": 0.71, "best_epoch": 1}


def test_test_accuracy_summary_single_epoch_and_errors():
    assert metrics.test_accuracy_summary(np.array([0.3])) == {
        "test_acc_last": 0.3, "test_acc_best": 0.3, "best_epoch": 0}
    with pytest.raises(ValueError, match="per_epoch_accuracy must be a non-empty 1-D array"):
        metrics.test_accuracy_summary([])
    with pytest.raises(ValueError, match="finite"):
        metrics.test_accuracy_summary([0.5, float("nan")])


def test_accuracy_and_label_recovery():
    assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert metrics.label_recovery(np.array([0, 1, 1, 2, 2]), np.array([0, 1, 2, 2, 0])) == 0.6
    with pytest.raises(ValueError, match="predicted has 3, true has 2"):
        metrics.accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="corrected_labels must be a non-empty 1-D array"):
        metrics.label_recovery(np.zeros((2, 2)), np.zeros(4))


def test_detection_scores_hand_example():
    flagged = [True, True, True, False, False, False]
    noisy = [True, False, False, True, False, False]
    # 1 true positive; 3 flagged; 2 noisy -> precision 1/3, recall 1/2, f1 = 2/5.
    scores = metrics.detection_scores(flagged, noisy)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(0.4)
    assert scores["n_flagged"] == 3
    assert scores["n_noisy"] == 2


def test_detection_scores_zero_divisions_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nothing_flagged = metrics.detection_scores([0, 0, 0], [1, 0, 0])
        nothing_noisy = metrics.detection_scores([1, 0, 0], [0, 0, 0])
    assert nothing_flagged == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                               "n_flagged": 0, "n_noisy": 1}
    assert nothing_noisy == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                             "n_flagged": 1, "n_noisy": 0}


def test_detection_scores_rejects_non_masks():
    with pytest.raises(ValueError, match="is_label_issue must be a boolean mask"):
        metrics.detection_scores([0, 2], [0, 1])
    with pytest.raises(ValueError, match="is_label_issue has 2, is_noisy has 3"):
        metrics.detection_scores([0, 1], [0, 1, 1])


def test_detection_auroc_hand_example():
    quality = [0.9, 0.8, 0.3, 0.6]
    noisy = [False, False, True, True]
    # Noise scores 0.1, 0.2 (clean) vs 0.7, 0.4 (noisy): all 4 noisy-clean pairs ordered right.
    assert metrics.detection_auroc(quality, noisy) == 1.0
    # Noise scores 0.1, 0.7 (clean) vs 0.2, 0.4 (noisy): 2 of the 4 pairs ordered right.
    assert metrics.detection_auroc([0.9, 0.3, 0.8, 0.6], noisy) == 0.5
    # A tie counts as half a pair: scores clean 0.5, 0.1 vs noisy 0.5 -> (0.5 + 1) / 2.
    assert metrics.detection_auroc([0.5, 0.9, 0.5], [False, False, True]) == 0.75


def test_detection_auroc_single_class_is_nan():
    assert math.isnan(metrics.detection_auroc([0.2, 0.4], [True, True]))
    assert math.isnan(metrics.detection_auroc([0.2, 0.4], [False, False]))


def test_label_quality_metrics_hand_example():
    true = np.array([0, 1, 2, 0, 1, 2])
    given = np.array([0, 1, 0, 1, 1, 2])  # samples 2 and 3 wrong
    suggested = np.array([0, 1, 2, 0, 2, 2])  # fixes 2 and 3, breaks 4
    quality = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.95])
    flagged = np.array([False, False, True, False, True, False])
    result = metrics.label_quality_metrics(given, suggested, quality, flagged, true)
    # Noisy samples 2, 3 have noise scores 0.9, 0.3; clean 0, 1, 4, 5 have 0.1, 0.2, 0.8, 0.05.
    # Sample 2 beats all 4 clean ones, sample 3 beats 3 of them: AUROC 7 / 8.
    assert result == {
        "given_label_accuracy": pytest.approx(4 / 6),
        "label_recovery": pytest.approx(5 / 6),
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "n_flagged": 2,
        "n_noisy": 2,
        "auroc": pytest.approx(7 / 8),
        "n_fixed": 2,
        "n_broken": 1,
    }
    plain = json.loads(json.dumps(result))
    assert all(type(value) in (int, float) for value in plain.values())
    assert type(result["auroc"]) is float and type(result["label_recovery"]) is float


def test_label_quality_metrics_checks_lengths():
    with pytest.raises(ValueError, match="label_quality has 2"):
        metrics.label_quality_metrics([0, 1, 2], [0, 1, 2], [0.5, 0.5], [0, 0, 1], [0, 1, 1])
