"""Paired comparison of two tuned candidates, row by row, on the same held-out rows.

    .venv/bin/python bench/compare_tune.py \\
        bench/results/tune/fmnist20k-sym20-ce-lr-f5.json \\
        bench/results/tune/fmnist20k-sym20-mixnn-alpha-f5.json:1.0

Each argument is a ``bench/tune.py`` result file, with ``:VALUE`` naming one of its grid values
(needed when it holds several). Both must have held out the same rows (same setting, seed and
folds). Prints, for the last epoch's held-out predictions: each candidate's accuracy on the noisy
labels, on the rows the reference keeps, on the noisy labels with every class weighed the same
("balanced", ``bench/tune.class_balanced_scores``; per fold with the weights of all held-out
rows), on the kept rows so weighed ("balanced kept") and on the true labels where the noise
was injected (the "clean judge": read only to judge, never to choose), then the difference
second minus first in points with its standard error over rows, and the difference per fold;
for files made with the same ``--plant`` share, the detection scores on the planted flips as
well (pooled and per fold: the folds' spread is their only measure of noise). Paired on the same
rows, the standard error is that of the per-row difference, much smaller than either score's own
when two models agree on most rows. It covers the rows, not the training's own randomness.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import SETTINGS, load  # noqa: E402
from bench.tune import class_balanced_scores, held_out_splits, reference_run  # noqa: E402
from mixnn_core.files import read_json  # noqa: E402

# detection scores on flips ``bench/tune.py --plant`` planted (``bench/planted_flips.py``), compared
# pooled and fold by fold when both files planted the same share
PLANTED_METRICS = ("f1", "precision", "recall", "auroc", "planted_recovery")


def paired_difference(right_first: np.ndarray, right_second: np.ndarray) -> tuple[float, float]:
    """Mean of ``right_second - right_first`` (bool per row: the candidate's prediction equals the
    label) in points of accuracy, and its standard error over the rows."""
    difference = np.asarray(right_second, dtype=np.float64) - np.asarray(right_first, dtype=np.float64)
    if difference.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 rows, got {difference.size}")
    return 100 * float(difference.mean()), 100 * float(difference.std(ddof=1) / np.sqrt(difference.size))


def held_out_scores(predicted: np.ndarray, noisy: np.ndarray, kept: np.ndarray | None,
                    true: np.ndarray | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per score, of held-out predictions ``predicted`` (one class per row): (its value on every
    row, which rows it is read on). "noisy": 1 where the prediction is the noisy label; "kept":
    the same on the rows the reference keeps (``kept``, left out when None); "balanced": the
    noisy one with every noisy-label class weighed the same (``class_balanced_scores``);
    "balanced kept": the kept one so weighed, by the classes' counts among the kept rows; "clean
    judge": 1 where it is the true label (``true``, left out when None)."""
    right = predicted == noisy
    every_row = np.ones(len(noisy), dtype=bool)
    scores = {"noisy": (right, every_row)}
    if kept is not None:
        scores["kept"] = (right, kept)
    scores["balanced"] = (class_balanced_scores(right, noisy), every_row)
    if kept is not None:
        balanced_kept = np.zeros(len(noisy))
        balanced_kept[kept] = class_balanced_scores(right[kept], noisy[kept])
        scores["balanced kept"] = (balanced_kept, kept)
    if true is not None:
        scores["clean judge"] = (predicted == true, every_row)
    return scores


def candidate(argument: str) -> tuple[Path, dict, str]:
    """The tune result file named by ``PATH[:VALUE]``: its path, its contents and the grid value
    it picks."""
    path, _, value = argument.partition(".json:")
    path = Path(path if path.endswith(".json") else path + ".json")
    if not path.is_file():
        raise ValueError(f"{path}: no such tune result file")
    result = read_json(path)
    values = list(result["results"])
    if not value:
        if len(values) != 1:
            raise ValueError(f"{path} holds the values {values}: name one as {path}:VALUE")
        value = values[0]
    return path, result, recorded_value(value, values, path)


def recorded_value(text: str, values: list[str], path: Path) -> str:
    """The value ``text`` names as ``bench/tune.py`` recorded it: as written there, or spelled as
    on its ``--grid`` (JSON: ``false`` names the recorded ``False``)."""
    if text in values:
        return text
    try:
        recorded = str(json.loads(text))
    except ValueError:
        recorded = None
    if recorded not in values:
        raise ValueError(f"{path} holds no value {text!r}; it holds {values}")
    return recorded


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="tune result file[:VALUE]")
    parser.add_argument("second", help="tune result file[:VALUE]")
    args = parser.parse_args(argv)
    (path, first, first_value), (_, second, second_value) = candidate(args.first), candidate(args.second)
    for key in ("setting", "seed", "folds", "epochs", "held_rows"):
        if first[key] != second[key]:
            parser.error(f"the two files differ in {key!r}: not the same held-out rows")
    data = load(SETTINGS[first["setting"]], seed=first["seed"])
    held_rows = np.asarray(first["held_rows"])
    reference = reference_run(first["setting"], data.train.images, data.noisy_labels, first["epochs"],
                              first["seed"], path.parent / "reference", need_joint=bool(first.get("plant")))
    kept = np.asarray(reference["rows_kept"], dtype=bool)[held_rows]
    true = data.train.labels[held_rows] if data.noise_report["mode"] != "clean" else None
    chosen = [first["results"][first_value], second["results"][second_value]]
    noisy = data.noisy_labels[held_rows]
    scored = [held_out_scores(np.asarray(result["held_out_predictions"]), noisy, kept, true)
              for result in chosen]
    print(f"{first['setting']}, seed {first['seed']}, {first['folds']} fold(s), {len(held_rows)} held-out rows\n"
          f"first:  {first['method']} {first['field']}={first_value} {first['fixed']}\n"
          f"second: {second['method']} {second['field']}={second_value} {second['fixed']}")
    sizes = [len(fold_held) for _, fold_held in held_out_splits(data.noisy_labels, first["seed"], first["folds"])]
    bounds = np.cumsum([0] + sizes)
    folds = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    summary = {}
    for name, (_, rows) in scored[0].items():
        correct = [scores[name][0] for scores in scored]
        right = [c[rows] for c in correct]
        difference, error = paired_difference(*right)
        per_fold = [paired_difference(*[c[fold][rows[fold]] for c in correct])[0] for fold in folds]
        summary[name] = {"first": float(right[0].mean()), "second": float(right[1].mean()),
                         "difference": difference, "standard_error": error, "per_fold_difference": per_fold}
        print(f"{name:>13}: {100 * right[0].mean():.2f} vs {100 * right[1].mean():.2f}, "
              f"second - first {difference:+.2f} +- {error:.2f} points ({rows.sum()} rows)")
    for name in scored[0]:
        print(f"per fold ({name}): " + ", ".join(f"{d:+.2f}" for d in summary[name]["per_fold_difference"]))
    planted = [result.get("planted_flips_per_fold") for result in chosen]
    if first.get("plant") and first.get("plant") == second.get("plant") and all(planted):
        pooled = [result["planted_flips"] for result in chosen]
        for metric in PLANTED_METRICS:
            per_fold = [b[metric] - a[metric] for a, b in zip(*planted)]
            summary[f"planted {metric}"] = {"first": pooled[0][metric], "second": pooled[1][metric],
                                            "per_fold_difference": per_fold}
            print(f"planted {metric}: {pooled[0][metric]:.4f} vs {pooled[1][metric]:.4f}, second - first "
                  f"{pooled[1][metric] - pooled[0][metric]:+.4f}; per fold "
                  + ", ".join(f"{d:+.4f}" for d in per_fold))
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # a wrong argument: one line naming the file or value, no traceback
        sys.exit(f"compare_tune: {error}")
