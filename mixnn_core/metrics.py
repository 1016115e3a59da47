"""How well a run found and fixed wrong labels, and how well its model classifies.

Everything here compares the run's outputs with ground truth that only exists in benchmarks
(true labels of a dataset with injected noise, or a held-out test set). All results are plain
Python ints and floats, ready for JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score


def _as_vector(name: str, values: np.ndarray | Sequence) -> np.ndarray:
    vector = np.asarray(values)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {vector.shape}")
    return vector


def _as_mask(name: str, values: np.ndarray | Sequence) -> np.ndarray:
    """``values`` as a boolean vector; only booleans or 0/1 are accepted."""
    vector = _as_vector(name, values)
    if vector.dtype != bool and not np.isin(vector, (0, 1)).all():
        raise ValueError(f"{name} must be a boolean mask (True/False or 1/0)")
    return vector.astype(bool)


def _check_same_length(**vectors: np.ndarray) -> None:
    lengths = {name: len(vector) for name, vector in vectors.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"inputs must have one entry per sample, but {described}")


def test_accuracy_summary(per_epoch_accuracy: np.ndarray | Sequence[float]) -> dict:
    """Last and best test accuracy over training, as published tables report them.

    ``per_epoch_accuracy[e]`` is the test accuracy after epoch e (epochs counted from 0).
    Returns ``test_acc_last`` (the final model's accuracy, the honest number),
    ``test_acc_best`` (the highest of any epoch) and ``best_epoch`` (its first epoch). The best
    is for comparison with the literature only: choosing a model by it would tune on the test
    set, and nothing in this product does.
    """
    accuracies = _as_vector("per_epoch_accuracy", per_epoch_accuracy).astype(np.float64)
    if not np.all(np.isfinite(accuracies)):
        raise ValueError("per_epoch_accuracy must be finite")
    best_epoch = int(np.argmax(accuracies))
    return {
        "test_acc_last": float(accuracies[-1]),
        "test_acc_best": float(accuracies[best_epoch]),
        "best_epoch": best_epoch,
    }


# Its name starts with "test_"; keep pytest from collecting it where it is imported by name.
test_accuracy_summary.__test__ = False


def accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """Fraction of samples whose ``predicted`` class equals the ``true`` one."""
    predicted = _as_vector("predicted", predicted)
    true = _as_vector("true", true)
    _check_same_length(predicted=predicted, true=true)
    return float(np.mean(predicted == true))


def label_recovery(corrected_labels: np.ndarray, true_labels: np.ndarray) -> float:
    """Fraction of training samples whose corrected label equals the true one.

    Compare with the fraction of given labels that are right (``given_label_accuracy`` of
    ``label_quality_metrics``): cleaning helped when recovery is higher.
    """
    corrected_labels = _as_vector("corrected_labels", corrected_labels)
    true_labels = _as_vector("true_labels", true_labels)
    _check_same_length(corrected_labels=corrected_labels, true_labels=true_labels)
    return float(np.mean(corrected_labels == true_labels))


def detection_scores(is_label_issue: np.ndarray, is_noisy: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged samples as a detector of wrong labels.

    ``is_label_issue``: True where the run says the given label is wrong (flagged).
    ``is_noisy``: True where the given label really is wrong.
    ``precision``: fraction of flagged samples that are really wrong; ``recall``: fraction of
    really wrong samples that are flagged; ``f1`` their harmonic mean. Each is 0.0 when its
    denominator is 0 (nothing flagged, nothing wrong). Also ``n_flagged`` and ``n_noisy``.
    """
    flagged = _as_mask("is_label_issue", is_label_issue)
    noisy = _as_mask("is_noisy", is_noisy)
    _check_same_length(is_label_issue=flagged, is_noisy=noisy)
    n_flagged = int(flagged.sum())
    n_noisy = int(noisy.sum())
    n_true_positive = int((flagged & noisy).sum())
    precision = n_true_positive / n_flagged if n_flagged else 0.0
    recall = n_true_positive / n_noisy if n_noisy else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "n_flagged": n_flagged, "n_noisy": n_noisy}


def detection_auroc(label_quality: np.ndarray, is_noisy: np.ndarray) -> float:
    """AUROC of the noise score ``1 - label_quality`` against the true wrong-label mask.

    ``label_quality`` in [0, 1] is high for labels that look right (e.g. the clean probability
    or the corrected label's agreement with the given one). The AUROC is the probability that a
    random wrong-labelled sample scores as noisier than a random correctly labelled one: 1.0 is
    a perfect ranking, 0.5 chance. NaN when all labels are wrong or all are right.
    """
    quality = _as_vector("label_quality", label_quality).astype(np.float64)
    noisy = _as_mask("is_noisy", is_noisy)
    _check_same_length(label_quality=quality, is_noisy=noisy)
    if not np.all(np.isfinite(quality)):
        raise ValueError("label_quality must be finite")
    if noisy.all() or not noisy.any():
        return math.nan
    return float(roc_auc_score(noisy, 1.0 - quality))


def label_quality_metrics(given_labels: np.ndarray, suggested_labels: np.ndarray,
                          label_quality: np.ndarray, is_label_issue: np.ndarray,
                          true_labels: np.ndarray) -> dict:
    """All label-cleaning metrics of one run against the true labels.

    ``given_labels``: the (noisy) training labels; ``suggested_labels``: the run's corrected
    labels; ``label_quality``: its per-sample score, high = given label looks right;
    ``is_label_issue``: the samples it flags as wrong; ``true_labels``: the ground truth.

    Returns ``given_label_accuracy`` (fraction of given labels that are right),
    ``label_recovery`` (fraction of suggestions that are right), the ``detection_scores`` of
    the flags against the truly wrong labels (``precision``, ``recall``, ``f1``, ``n_flagged``,
    ``n_noisy``), the ``auroc`` of ``detection_auroc``, ``n_fixed`` (given label wrong,
    suggestion right) and ``n_broken`` (given label right, suggestion wrong).
    """
    given = _as_vector("given_labels", given_labels)
    suggested = _as_vector("suggested_labels", suggested_labels)
    true = _as_vector("true_labels", true_labels)
    _check_same_length(given_labels=given, suggested_labels=suggested, true_labels=true,
                       label_quality=_as_vector("label_quality", label_quality),
                       is_label_issue=_as_vector("is_label_issue", is_label_issue))
    given_right = given == true
    suggested_right = suggested == true
    return {
        "given_label_accuracy": float(given_right.mean()),
        "label_recovery": float(suggested_right.mean()),
        **detection_scores(is_label_issue, ~given_right),
        "auroc": detection_auroc(label_quality, ~given_right),
        "n_fixed": int((~given_right & suggested_right).sum()),
        "n_broken": int((given_right & ~suggested_right).sum()),
    }
