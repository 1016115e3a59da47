"""How well each label-free held-out score picks as the true labels would, over past tune results.

    .venv/bin/python bench/score_agreement.py [bench/results/tune]

Every two candidates of ``bench/tune.py`` result files that held out the same rows (same
setting, epoch budget, seed and folds; files made with ``--plant`` trained on other labels and
are left out) make a pair. For each pair: the difference, second minus first, of the last
epoch's held-out accuracy on the noisy labels ("noisy"), on the rows the reference keeps
("kept", where the reference file is there), with every noisy-label class weighed the same
("balanced", ``bench/tune.class_balanced_scores``), on the kept rows so weighed ("balanced kept")
and on the true labels ("clean judge", read only to judge). Per setting it prints how the
label-free scores agree with the clean judge: the correlation of the differences over the pairs,
and on the pairs whose clean-judge difference is beyond two of its standard errors, the share
where the score's difference has the same sign.
Pairs share candidates, so they are not independent: read the numbers as a description of the
results at hand, not as a test.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare_tune import held_out_scores, paired_difference  # noqa: E402
from bench.suite import SETTINGS, load  # noqa: E402
from mixnn_core.files import read_json  # noqa: E402

SCORES = ("noisy", "kept", "balanced", "balanced kept")


def candidate_groups(folder: Path) -> dict[tuple, list[tuple[str, np.ndarray]]]:
    """The candidates (``file:value``, last-epoch held-out predictions) of every result file in
    ``folder`` that kept its predictions, grouped by the rows they held out: (setting, epochs,
    seed, folds, held-out rows as a tuple)."""
    groups: dict[tuple, list] = {}
    for path in sorted(folder.glob("*.json")):
        result = read_json(path)
        if "held_rows" not in result or result.get("plant"):
            continue
        if result.get("setting") not in SETTINGS:
            raise ValueError(f"{path}: setting {result.get('setting')!r} is none of bench/suite.py's")
        if SETTINGS[result["setting"]].noise is None:  # clean labels: no label-free score to judge
            continue
        held_rows = tuple(result["held_rows"])
        key = (result["setting"], result["epochs"], result["seed"], result["folds"], held_rows)
        for value, scored in result["results"].items():
            if "held_out_predictions" in scored:
                predicted = np.asarray(scored["held_out_predictions"])
                groups.setdefault(key, []).append((f"{path.name}:{value}", predicted))
    return groups


def pair_differences(per_row: dict[str, dict[str, np.ndarray]]) -> list[dict[str, tuple[float, float]]]:
    """For every two candidates of ``per_row`` (candidate -> score name -> per-row scores on the
    same rows), score name -> (second minus first in points, its standard error over rows)."""
    return [{name: paired_difference(per_row[first][name], per_row[second][name]) for name in per_row[first]}
            for first, second in itertools.combinations(per_row, 2)]


def agreement(differences: list[dict[str, tuple[float, float]]], score: str) -> tuple[float, float, int]:
    """How ``score``'s differences agree with the clean judge's: their correlation over the pairs
    (nan under three pairs), the share of same signs on the pairs whose clean-judge difference
    is beyond two standard errors (nan if none) and how many those are."""
    mine = np.array([pair[score][0] for pair in differences])
    judged = np.array([pair["clean judge"][0] for pair in differences])
    errors = np.array([pair["clean judge"][1] for pair in differences])
    clear = np.abs(judged) > 2 * errors
    correlation = float(np.corrcoef(mine, judged)[0, 1]) if len(differences) >= 3 else float("nan")
    same_signs = np.sign(mine[clear]) == np.sign(judged[clear])
    same_sign = float(same_signs.mean()) if clear.any() else float("nan")
    return correlation, same_sign, int(clear.sum())


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "bench" / "results" / "tune")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder}: no such folder of tune results")
    by_setting: dict[str, list] = {}
    loaded = {}  # (setting, seed) -> its data: several groups share one
    for (setting, epochs, seed, _, held_rows), candidates in candidate_groups(args.folder).items():
        if len(candidates) < 2:
            continue
        if (setting, seed) not in loaded:
            loaded[setting, seed] = load(SETTINGS[setting], seed=seed)
        data, held_rows = loaded[setting, seed], np.asarray(held_rows)
        reference = args.folder / "reference" / f"{setting}-e{epochs}-s{seed}.json"
        kept = None
        if reference.exists():
            kept = np.asarray(read_json(reference)["rows_kept"], dtype=bool)[held_rows]
        noisy, true = data.noisy_labels[held_rows], data.train.labels[held_rows]
        per_row = {}
        for name, predicted in candidates:  # each score on the rows it is read on
            scores = held_out_scores(predicted, noisy, kept, true)
            per_row[name] = {score: values[rows] for score, (values, rows) in scores.items()}
        by_setting.setdefault(setting, []).extend(pair_differences(per_row))
    summary = {}
    for setting, differences in sorted(by_setting.items()):
        summary[setting] = {"pairs": len(differences), "differences": differences}
        line = f"{setting}: {len(differences)} pairs"
        for score in SCORES:
            with_score = [pair for pair in differences if score in pair]
            if not with_score:
                continue
            correlation, same_sign, clear = agreement(with_score, score)
            summary[setting][score] = {"pairs": len(with_score), "correlation": correlation,
                                       "same_sign": same_sign, "clear_pairs": clear}
            line += f" | {score}: r {correlation:.3f}, same sign {same_sign:.3f} of {clear} clear"
        print(line)
    if not summary:
        print(f"{args.folder}: no two tune candidates held out the same rows")
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # a damaged or unknown result file: one line naming it, no traceback
        sys.exit(f"score_agreement: {error}")
