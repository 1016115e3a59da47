"""Per-sample outputs of a run: what the tool says about each training label.

``label_quality`` is the estimated probability that the GIVEN label is correct: the final
model's prediction on the given class (for ``ce`` / ``mixup`` their soft label; for ``mixnn``
since the thirty-sixth pass, ``MIXNN_LABEL_QUALITY``; runs given no final predictions read the
soft label's mass on it). It is not the mixture's clean probability, which is fitted against the
corrected labels and says nothing about the given label once they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mixnn_core.confident_learning import counted_suggestions
from mixnn_core.label_posterior import weighed_posterior
from mixnn_core.metrics import label_quality_metrics
from mixnn_core.review_flags import flag_cut, review_flags

# The one threshold of ``is_label_issue``: a given label is flagged when its estimated
# probability is below that of the best class, i.e. the soft label's argmax differs from it
# (cleanlab's "predicted_neq_given" rule). With two classes this is ``soft_label[given] < 0.5``.
# Measured on digits with 40 % symmetric noise, it gave detection F1 0.98 where a fixed 0.5 gave
# 0.80: corrected soft labels of clean samples often keep only 0.3-0.6 on their class.
LABEL_ISSUE_RULE = "soft_label[given] < max(soft_label)"
# mixnn's flags (since the thirty-ninth pass): the labels likeliest wrong by the weighed posterior
# (``label_posterior``: 1 - posterior[given]), as many as maximise the F1 that posterior expects
# (``review_flags``); every label the suggestion changes is among them. Until then: every changed
# label, and of the others those whose soft label prefers another class and that a mixture fitted
# to the final model's loss on the given labels called noisy, which flagged many right labels
# under symmetric noise. On the final arrays of 38 Fashion-MNIST and CIFAR-10N runs (BENCHMARKS
# "Thirty-ninth pass", ``bench/flag_rules.py``, true training labels), detection F1 of the six
# 20-epoch seeds, mean: sym 20 0.850 -> 0.909, sym 50 0.938 -> 0.944, sym 80 level, asym 40 0.744
# -> 0.753, pair-flip 45 0.918 -> 0.944; CIFAR-10N aggre 0.530 -> 0.552; asym 40 at 100 epochs
# 0.772 -> 0.731, where the posterior, after the model memorised flips, counts too few wrong labels.
MIXNN_LABEL_ISSUE_RULE = ("1 - posterior[given] >= flag cut: posterior as for suggested_label, the cut the "
                          "smallest of the labels whose flagging maximises the F1 the posterior expects "
                          "(model card: given_label_evidence.flag_cut)")
# mixnn's label_quality (since the thirty-sixth pass) is the final model's prediction on the given
# class, not the suggestion soft label's mass on it: that soft label is (beside a 5 % share of the
# given label) an average of the predictions every correction used, from the first on, and the
# early ones hedge between the classes a flip confuses. Pair-flip 45, seed 0, median prediction
# on the given class of wrong / right labels after the warm-up 0.32 / 0.58, at the end 0.007 /
# 0.99; the final soft label's mass 0.34 / 0.67. On the final arrays of ten Fashion-MNIST runs
# (``bench/quality_scores.py``, BENCHMARKS "Thirty-sixth pass"), of seven parameter-free
# candidates it fell least short of the best one in each run (mean 0.0013, largest 0.0035 AUROC;
# the soft label's mass: 0.011 / 0.074); against the soft label: pair-flip 45 0.912 -> 0.982,
# asym 40 0.930 -> 0.942, 60k sym 50 0.9934 -> 0.9940, symmetric 20-80 % at 20 epochs
# 0.0001-0.0008 lower.
LABEL_QUALITY_RULE = "soft_label[given]"
MIXNN_LABEL_QUALITY = "final prediction[given]"
SUGGESTION_RULE = "argmax(soft_label)"
# mixnn's suggestion during training (the consolidation gate, the per-epoch recovery): only the
# labels confident learning counts as wrong (``mixnn_core.confident_learning.label_issues`` on
# the suggestion soft labels) change. Measured on the final soft labels of the default 20-epoch
# runs (BENCHMARKS.md nineteenth pass), recovery against the argmax: Fashion-MNIST sym 50 % 88.4 ->
# 89.5, asym 40 % 87.5 -> 87.7, pair-flip 45 % 82.0 -> 83.4, CIFAR-10N worse 60.8 -> 67.7, aggre
# 66.0 -> 81.3 (the given labels: 91.0).
COUNTED_SUGGESTION_RULE = "argmax(soft_label) where confident learning counts given_label wrong, else given_label"
# mixnn's exported suggestion (since the thirty-eighth pass): the final model's prediction with the
# given label weighed as evidence (``mixnn_core.label_posterior``). The flag is not narrowed to the
# changed labels: a flagged label whose suggestion is the given one is left for a person to review.
MIXNN_SUGGESTION_RULE = ("argmax_k final prediction tempered (model card: given_label_evidence.temperature)[k] "
                         "* P(given_label | k), P from the confident joint of given_label and soft_label, "
                         "+1 per cell")


@dataclass(frozen=True)
class SampleOutputs:
    given_label: np.ndarray  # (N,) int64
    suggested_label: np.ndarray  # (N,) int64, argmax of the soft label
    suggested_confidence: np.ndarray  # (N,) max of the soft label
    soft_label: np.ndarray  # (N, C) float32, rows in the simplex
    label_quality: np.ndarray  # (N,) see label_quality_rule
    is_label_issue: np.ndarray  # (N,) bool, see label_issue_rule
    p_clean: np.ndarray  # (N,) the last fit's clean probability as training weighed it (1 where never fitted)
    label_issue_rule: str = LABEL_ISSUE_RULE  # what is_label_issue says, in words
    label_quality_rule: str = LABEL_QUALITY_RULE  # how label_quality is computed, in words
    suggestion_rule: str = SUGGESTION_RULE  # how suggested_label is chosen, in words
    # the temperature the final predictions were tempered to before the given label was weighed
    # (mixnn_core.label_posterior; None when the suggestion did not read them)
    suggestion_temperature: float | None = None
    # the probability of being wrong from which a label is flagged (mixnn_core.review_flags;
    # None when the flags did not read one)
    flag_cut: float | None = None


def _per_sample(name: str, values, shape: tuple, dtype) -> np.ndarray:
    """``values`` as an array of ``dtype``; a ValueError naming ``name`` unless its shape is ``shape``."""
    values = np.asarray(values, dtype=dtype)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {values.shape}")
    return values


def sample_outputs(given_labels: np.ndarray, soft_labels: np.ndarray, p_clean: np.ndarray,
                   suggested_labels: np.ndarray | None = None, final_probs: np.ndarray | None = None,
                   wrong_probability: np.ndarray | None = None, cut: float | None = None) -> SampleOutputs:
    """Suggested label, confidence, label quality and issue flag of every sample.

    The suggestion is ``suggested_labels`` (N,) when given, else the soft label's argmax; its
    confidence is the soft label's mass on it. The given label is flagged wherever the soft
    label prefers another class (``LABEL_ISSUE_RULE``); with each label's probability of being
    wrong ``wrong_probability`` (N,) (a ``mixnn`` run), where it reaches ``cut``, by default the
    ``review_flags.flag_cut`` of these labels (``MIXNN_LABEL_ISSUE_RULE``). ``label_quality`` is
    the mass of the final model's predictions ``final_probs`` (N, C) on the given class when
    given (``MIXNN_LABEL_QUALITY``), else the soft label's.
    """
    given = np.asarray(given_labels, dtype=np.int64)
    soft = np.asarray(soft_labels, dtype=np.float32)
    if soft.ndim != 2 or soft.shape[0] != given.shape[0]:
        raise ValueError(f"soft_labels must be (N, C) with N = {given.shape[0]}, got {soft.shape}")
    rows = np.arange(given.shape[0])
    soft_on_given = soft[rows, given].astype(np.float64).clip(0.0, 1.0)
    suggested = soft.argmax(axis=1).astype(np.int64)
    if suggested_labels is not None:
        suggested = _per_sample("suggested_labels", suggested_labels, given.shape, np.int64)
        if suggested.size and (suggested.min() < 0 or suggested.max() >= soft.shape[1]):
            raise ValueError(f"suggested_labels must lie in [0, {soft.shape[1]})")
    confidence = soft[rows, suggested].astype(np.float64).clip(0.0, 1.0)
    is_label_issue = soft_on_given < soft.max(axis=1).astype(np.float64).clip(0.0, 1.0)
    rule = LABEL_ISSUE_RULE
    if wrong_probability is not None:
        wrong = _per_sample("wrong_probability", wrong_probability, given.shape, np.float64)
        cut = flag_cut(wrong) if cut is None else float(cut)
        is_label_issue, rule = review_flags(wrong, cut), MIXNN_LABEL_ISSUE_RULE
    quality, quality_rule = soft_on_given, LABEL_QUALITY_RULE
    if final_probs is not None:
        final_probs = _per_sample("final_probs", final_probs, soft.shape, np.float64)
        quality, quality_rule = final_probs[rows, given].clip(0.0, 1.0), MIXNN_LABEL_QUALITY
    return SampleOutputs(
        given_label=given,
        suggested_label=suggested,
        suggested_confidence=confidence,
        soft_label=soft,
        label_quality=quality,
        is_label_issue=is_label_issue,
        p_clean=np.asarray(p_clean, dtype=np.float64),
        label_issue_rule=rule,
        label_quality_rule=quality_rule,
        flag_cut=cut if wrong_probability is not None else None,
    )


def mixnn_outputs(given_labels: np.ndarray, soft_labels: np.ndarray, p_clean: np.ndarray,
                  final_probs: np.ndarray | None = None) -> SampleOutputs:
    """A mixnn run's outputs from its suggestion soft labels (N, C) and, once trained, its final
    predictions ``final_probs`` (N, C) on the training samples.

    With them (a run's export; ``MIXNN_SUGGESTION_RULE``): the suggestion is the class likeliest
    once the given label is weighed as evidence (``label_posterior.weighed_posterior``), the
    labels likeliest wrong by that posterior flagged (``MIXNN_LABEL_ISSUE_RULE``) and scored as
    ``MIXNN_LABEL_QUALITY`` (``sample_outputs``), the temperature kept as
    ``suggestion_temperature`` and the flags' cut as ``flag_cut``. Without them
    (during training: the consolidation gate, the per-epoch recovery;
    ``COUNTED_SUGGESTION_RULE``): only the labels confident learning counts as wrong change
    (``counted_suggestions``), flagged by the argmax rule and scored by the soft label."""
    given = np.asarray(given_labels, dtype=np.int64)
    if final_probs is None:
        return replace(sample_outputs(given, soft_labels, p_clean, counted_suggestions(given, soft_labels)),
                       suggestion_rule=COUNTED_SUGGESTION_RULE)
    posterior, temperature = weighed_posterior(given, final_probs, soft_labels)
    wrong = (1.0 - posterior[np.arange(given.shape[0]), given]).clip(0.0, 1.0)
    outputs = sample_outputs(given, soft_labels, p_clean, posterior.argmax(axis=1), final_probs, wrong)
    return replace(outputs, suggestion_rule=MIXNN_SUGGESTION_RULE, suggestion_temperature=temperature)


def outputs_metrics(outputs: SampleOutputs, true_labels: np.ndarray) -> dict:
    """``metrics.label_quality_metrics`` of a run's (or a candidate rule's) outputs against the
    true labels ``true_labels`` (N,)."""
    return label_quality_metrics(outputs.given_label, outputs.suggested_label, outputs.label_quality,
                                 outputs.is_label_issue, true_labels)
