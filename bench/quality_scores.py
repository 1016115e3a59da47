"""Which score should rank the given labels (``label_quality``)? Scores candidates on saved
per-sample arrays, with TRUE labels.

    .venv/bin/python bench/quality_scores.py /work/samples/fmnist20k-sym20-e20-final.npz ...

Reads the ``--samples`` files of ``bench/mixing_diagnostics.py`` (given and true labels, the
run's suggestion soft labels, the final model's predictions) and, for every candidate score, the
AUROC of ranking the truly wrong labels below the right ones (the suite's "AUROC" column; a
person reviewing a manifest reads it lowest ``label_quality`` first). The candidates have no
parameter; this script measures them, it must not tune one.

``--retag ROW.json`` (one samples file): the suite row of the same run scored again with the
product's current ``label_quality``, written in place with the previous figure kept under
``label_quality_retag``; only when the samples reproduce the row's labels (recovery, detection
scores and its AUROC from the soft label alone, all equal), else a ValueError naming the field.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suggestion_rules import (  # noqa: E402
    check_reproduced,
    given_label_clean_probability,
    mixture_flagged_outputs,
    read_samples,
    score_samples,
)
from mixnn_core.confident_learning import counted_suggestions  # noqa: E402
from mixnn_core.files import read_json, write_json_atomic  # noqa: E402
from mixnn_core.label_posterior import tempered, weighed_posterior  # noqa: E402
from mixnn_core.metrics import detection_auroc, label_quality_metrics  # noqa: E402

MIXNN_QUALITY = "final prediction on the given class (ce's; mixnn's since the thirty-sixth pass)"


def given_class_margin(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mass on the given class minus the largest mass on another class, in [-1, 1]."""
    rows = np.arange(len(given))
    others = probs.copy()
    others[rows, given] = -np.inf
    return probs[rows, given] - others.max(axis=1)


def scores_by_candidate(given: np.ndarray, soft: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate ``label_quality`` (N,), high = the given label looks right. ``soft``: the
    run's suggestion soft labels; ``probs``: the final model's predictions."""
    rows = np.arange(len(given))
    on_soft, on_probs = soft[rows, given], probs[rows, given]
    posterior, temperature = weighed_posterior(given, probs, soft)
    return {
        "soft label on the given class (the product's until the thirty-sixth pass)": on_soft,
        MIXNN_QUALITY: on_probs,
        "mean of the two": (on_soft + on_probs) / 2,
        "geometric mean of the two": np.sqrt(on_soft * on_probs),
        "given-label mixture p_clean": given_label_clean_probability(given, probs),
        "soft label's margin of the given class": (given_class_margin(given, soft) + 1) / 2,
        "final prediction's margin of the given class": (given_class_margin(given, probs) + 1) / 2,
        "weighed posterior on the given class (the relabel flow's)": posterior[rows, given],
        "tempered final prediction on the given class": tempered(probs, temperature)[rows, given],
    }


def retagged_row(row: dict, given: np.ndarray, true: np.ndarray, soft: np.ndarray, probs: np.ndarray,
                 samples_name: str) -> dict:
    """``row`` (a suite row of a ``mixnn`` run) with the AUROC of the product's current
    ``label_quality``, computed from the run's final arrays; ValueError unless they reproduce it."""
    if row["method"] != "mixnn" or "label_quality_retag" in row:
        raise ValueError(f"only a mixnn row not yet retagged can be retagged (method {row['method']})")
    outputs = mixture_flagged_outputs(given, soft, np.ones(len(given)), counted_suggestions(given, soft), probs,
                                      row["config"]["seed"])
    before = label_quality_metrics(given, outputs.suggested_label, soft[np.arange(len(given)), given],
                                   outputs.is_label_issue, true)
    check_reproduced(before, row, samples_name)
    return {**row, "auroc": detection_auroc(outputs.label_quality, given != true), "label_quality_retag": {
        "previous_auroc": row["auroc"], "label_quality": outputs.label_quality_rule, "samples": samples_name,
        "date": datetime.date.today().isoformat(),
        "why": "label_quality's rule changed (thirty-sixth pass); the run's final arrays, from "
               "bench/mixing_diagnostics.py --samples, reproduce the row's labels, so only its AUROC is recomputed"}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="also write the AUROCs here (.json)")
    parser.add_argument("--retag", type=Path, metavar="ROW.json", help="the suite row of the one samples file's run")
    args = parser.parse_args(argv)
    if args.retag:
        if len(args.samples) != 1:
            parser.error("--retag takes exactly one samples file")
        row = retagged_row(read_json(args.retag), *read_samples(args.samples[0]), args.samples[0].name)
        write_json_atomic(row, args.retag)
        print(f"{args.retag}: AUROC {row['label_quality_retag']['previous_auroc']:.4f} -> {row['auroc']:.4f}")

    def score(given: np.ndarray, true: np.ndarray, soft: np.ndarray, probs: np.ndarray) -> dict:
        wrong, rows = given != true, np.arange(len(given))
        for name, mass in (("soft label", soft[rows, given]), ("final prediction", probs[rows, given])):
            print(f"  median {name} mass on the given class: wrong labels {np.median(mass[wrong]):.3f}, "
                  f"right ones {np.median(mass[~wrong]):.3f}")
        aurocs = {name: {"auroc": detection_auroc(quality, wrong)}
                  for name, quality in scores_by_candidate(given, soft, probs).items()}
        for name, row in aurocs.items():
            print(f"  {name:80s} AUROC {row['auroc']:.4f}")
        return aurocs

    return score_samples(args.samples, score, args.out, (MIXNN_QUALITY, "auroc"))


if __name__ == "__main__":
    main()
