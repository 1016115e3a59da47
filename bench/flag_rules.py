"""Which given labels should a run flag as wrong? Scores flag rules on saved per-sample arrays,
with TRUE labels.

    .venv/bin/python bench/flag_rules.py /work/samples/fmnist20k-sym20-e20-final.npz ...

Reads the ``--samples`` files of ``bench/mixing_diagnostics.py`` (given and true labels, the
run's suggestion soft labels, the final model's predictions) and, for every rule, the detection
precision, recall and F1 of its flags against the truly wrong labels (``is_label_issue`` in the
manifest; the suite's "detection" columns). The rules have no tuned threshold; this script
measures them, it must not tune one. (``bench/quality_scores.py`` scores the ranking, AUROC.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suggestion_rules import given_label_clean_probability, mixture_flags, score_samples  # noqa: E402
from mixnn_core.confident_learning import confident_joint, label_issues  # noqa: E402
from mixnn_core.label_posterior import weighed_posterior  # noqa: E402
from mixnn_core.metrics import detection_scores  # noqa: E402
from mixnn_core.outputs import mixnn_outputs  # noqa: E402

MIXNN_RULE = "likeliest wrong by the weighed posterior, as many as maximise its expected F1 (mixnn's, 39th pass)"


def flags_by_rule(given: np.ndarray, soft: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the labels each rule flags. ``soft``: the run's suggestion soft labels;
    ``probs``: the final model's predictions."""
    rows = np.arange(len(given))
    quality = soft[rows, given]
    differs = quality < soft.max(axis=1)

    def lowest_quality(count: int) -> np.ndarray:
        chosen = np.zeros(len(given), bool)
        chosen[np.argsort(quality, kind="stable")[:max(0, count)]] = True
        return chosen

    p_given = given_label_clean_probability(given, probs)
    joint = confident_joint(given, soft)
    counted = label_issues(given, soft)  # the labels a mixnn run changed until the thirty-eighth pass
    posterior, _ = weighed_posterior(given, probs, soft)
    weighed = posterior.argmax(axis=1) != given  # the labels a mixnn run changes
    doubted = differs & (p_given < 0.5)
    product = mixnn_outputs(given, soft, np.ones(len(given)), probs).is_label_issue
    return {
        "argmax differs (the product's rule until the thirty-fifth pass; ce's)": differs,
        "confident learning on the soft labels": counted,
        "confident learning on the model's predictions": label_issues(given, probs),
        "given-label mixture p < 0.5": p_given < 0.5,
        "argmax differs and given-label mixture p < 0.5": doubted,
        "counted change, or differs and given-label mixture p < 0.5 (mixnn's, 35th-37th passes)":
            doubted | counted,
        "weighed suggestion changes it": weighed,
        "weighed change, or differs and given-label mixture p < 0.5 (mixnn's, 38th pass)":
            mixture_flags(given, soft, probs, posterior.argmax(axis=1)),
        "weighed posterior on the given class < 0.5": posterior[rows, given] < 0.5,
        MIXNN_RULE: product,
        "likeliest wrong by the weighed posterior (expected F1), or differs and given-label mixture p < 0.5":
            product | doubted,
        "lowest quality, n = confident-joint estimate": lowest_quality(int(joint.sum() - np.trace(joint))),
        "lowest quality, n = given-label mixture estimate": lowest_quality(int(round((1 - p_given).sum()))),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="also write the scores here (.json)")
    args = parser.parse_args(argv)

    def score(given: np.ndarray, true: np.ndarray, soft: np.ndarray, probs: np.ndarray) -> dict:
        rows = {}
        for name, flags in flags_by_rule(given, soft, probs).items():
            rows[name] = scores = detection_scores(flags, given != true)
            print(f"  {name:90s} flagged {scores['n_flagged']:6d} precision {scores['precision']:.4f} "
                  f"recall {scores['recall']:.4f} F1 {scores['f1']:.4f}")
        return rows

    return score_samples(args.samples, score, args.out, (MIXNN_RULE, "f1"))


if __name__ == "__main__":
    main()
