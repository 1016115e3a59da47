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
from mixnn_core.gmm import clean_probability
from mixnn_core.label_posterior import weighed_posterior
from mixnn_core.metrics import label_quality_metrics

# The one threshold of ``is_label_issue``: a given label is flagged when its estimated
# probability is below that of the best class, i.e. the soft label's argmax differs from it
# (cleanlab's "predicted_neq_given" rule). With two classes this is ``soft_label[given] < 0.5``.
# Measured on digits with 40 % symmetric noise, it gave detection F1 0.98 where a fixed 0.5 gave
# 0.80: corrected soft labels of clean samples often keep only 0.3-0.6 on their class.
LABEL_ISSUE_RULE = "soft_label[given] < max(soft_label)"
# mixnn's flags (since the thirty-fifth pass): every label the suggestion changes, and of the
# others only those the method's own test also calls wrong: the two-component mixture fitted to the
# final model's cross-entropy on the GIVEN labels (``given_label_clean_probability``) puts them
# in its high-loss component. The argmax rule alone also flags clean labels the model merely
# gets wrong. On the final arrays of the 20-epoch Fashion-MNIST 20k runs, seed 0
# (``bench/flag_rules.py``, BENCHMARKS "Thirty-fifth pass"), detection F1 against the argmax
# rule: sym 20 0.822 -> 0.848, sym 50 0.929 -> 0.936, pair-flip 45 0.936 -> 0.946, asym 40
# 0.764 -> 0.768, sym 80 0.948 -> 0.947 (seed 1: sym 20, 50, 80, asym 40 +0.026, +0.007, +0.000, +0.005).
MIXNN_LABEL_ISSUE_RULE = (f"suggested_label != given_label or ({LABEL_ISSUE_RULE} "
                          "and given-label mixture p_clean < 0.5)")
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
    p_clean: np.ndarray  # (N,) the last mixture fit's clean probability (1 where never fitted)
    label_issue_rule: str = LABEL_ISSUE_RULE  # what is_label_issue says, in words
    label_quality_rule: str = LABEL_QUALITY_RULE  # how label_quality is computed, in words
    suggestion_rule: str = SUGGESTION_RULE  # how suggested_label is chosen, in words
    # the temperature the final predictions were tempered to before the given label was weighed
    # (mixnn_core.label_posterior; None when the suggestion did not read them)
    suggestion_temperature: float | None = None


def given_label_losses(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Cross-entropy (N,) of each sample's predicted class probabilities ``probs`` (N, C)
    against its GIVEN label (probabilities clipped at 1e-12, so at most about 27.6)."""
    given = np.asarray(given_labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != given.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = {given.shape[0]}, got {probs.shape}")
    return -np.log(np.clip(probs[np.arange(given.shape[0]), given], 1e-12, None))


def given_label_clean_probability(given_labels: np.ndarray, probs: np.ndarray, seed: int = 0) -> np.ndarray:
    """Probability (N,) that each GIVEN label is clean: the method's two-component mixture
    (``mixnn_core.gmm.clean_probability``) fitted to the model's cross-entropy on the given
    labels (``given_label_losses``). Unlike a run's ``p_clean``, whose losses are taken against
    the corrected labels, it speaks about the label the user gave."""
    return clean_probability(given_label_losses(given_labels, probs), seed=seed)


def _per_sample(name: str, values, shape: tuple, dtype) -> np.ndarray:
    """``values`` as an array of ``dtype``; a ValueError naming ``name`` unless its shape is ``shape``."""
    values = np.asarray(values, dtype=dtype)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {values.shape}")
    return values


def sample_outputs(given_labels: np.ndarray, soft_labels: np.ndarray, p_clean: np.ndarray,
                   suggested_labels: np.ndarray | None = None, final_probs: np.ndarray | None = None,
                   seed: int = 0) -> SampleOutputs:
    """Suggested label, confidence, label quality and issue flag of every sample.

    The suggestion is ``suggested_labels`` (N,) when given, else the soft label's argmax; its
    confidence is the soft label's mass on it. The given label is flagged wherever the soft
    label prefers another class (``LABEL_ISSUE_RULE``).
    With the final model's predictions ``final_probs`` (N, C) (a ``mixnn`` run), only where the
    given-label mixture fitted to their loss (``given_label_clean_probability``, ``seed``) calls
    the label noisy too, or where the suggestion changes it (``MIXNN_LABEL_ISSUE_RULE``); and
    ``label_quality`` is the predictions' mass on the given class (``MIXNN_LABEL_QUALITY``),
    else the soft label's.
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
    quality, rule, quality_rule = soft_on_given, LABEL_ISSUE_RULE, LABEL_QUALITY_RULE
    if final_probs is not None:
        final_probs = _per_sample("final_probs", final_probs, soft.shape, np.float64)
        given_label_clean = given_label_clean_probability(given, final_probs, seed)
        is_label_issue = (is_label_issue & (given_label_clean < 0.5)) | (suggested != given)
        quality = final_probs[rows, given].clip(0.0, 1.0)
        rule, quality_rule = MIXNN_LABEL_ISSUE_RULE, MIXNN_LABEL_QUALITY
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
    )


def mixnn_outputs(given_labels: np.ndarray, soft_labels: np.ndarray, p_clean: np.ndarray,
                  final_probs: np.ndarray | None = None, seed: int = 0) -> SampleOutputs:
    """A mixnn run's outputs from its suggestion soft labels (N, C) and, once trained, its final
    predictions ``final_probs`` (N, C) on the training samples.

    With them (a run's export; ``MIXNN_SUGGESTION_RULE``): the suggestion is the class likeliest
    once the given label is weighed as evidence (``label_posterior.weighed_posterior``), flagged
    as ``MIXNN_LABEL_ISSUE_RULE`` says and scored as ``MIXNN_LABEL_QUALITY``
    (``sample_outputs``), the temperature kept as ``suggestion_temperature``. Without them
    (during training: the consolidation gate, the per-epoch recovery;
    ``COUNTED_SUGGESTION_RULE``): only the labels confident learning counts as wrong change
    (``counted_suggestions``), flagged by the argmax rule and scored by the soft label."""
    given = np.asarray(given_labels, dtype=np.int64)
    if final_probs is None:
        return replace(sample_outputs(given, soft_labels, p_clean, counted_suggestions(given, soft_labels)),
                       suggestion_rule=COUNTED_SUGGESTION_RULE)
    posterior, temperature = weighed_posterior(given, final_probs, soft_labels)
    outputs = sample_outputs(given, soft_labels, p_clean, posterior.argmax(axis=1), final_probs, seed)
    return replace(outputs, suggestion_rule=MIXNN_SUGGESTION_RULE, suggestion_temperature=temperature)


def outputs_metrics(outputs: SampleOutputs, true_labels: np.ndarray) -> dict:
    """``metrics.label_quality_metrics`` of a run's (or a candidate rule's) outputs against the
    true labels ``true_labels`` (N,)."""
    return label_quality_metrics(outputs.given_label, outputs.suggested_label, outputs.label_quality,
                                 outputs.is_label_issue, true_labels)
