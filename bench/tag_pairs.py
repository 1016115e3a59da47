"""An option's suite rows against the default's, seed by seed: what the option changed.

    .venv/bin/python bench/tag_pairs.py --tag posterior-p-clean [--method mixnn] [--epochs 20]

For every setting and seed with both a row tagged ``--tag`` and the untagged row of the same
method and budget (the same noisy labels, initialisation and batch order: the pair differs only
in the option, and the code between the two rows' commits), prints test accuracy, label
recovery, detection F1 and AUROC of the tagged row minus the untagged one, with plain
training's (``ce``) test accuracy for scale, then the mean difference per setting and on how
many seeds it was positive. Test labels: this reports an option, it never chooses one
(``bench/tune.py`` does that on held-out noisy labels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import by, load_runs  # noqa: E402

KEYS = (("test_acc_last", "test", 100), ("label_recovery", "recovery", 100), ("f1", "F1", 1),
        ("auroc", "AUROC", 1))


def tag_differences(runs: list[dict], tag: str, method: str, epochs: int) -> dict[str, dict[int, dict]]:
    """{setting: {seed: {key: tagged - untagged, ..., "ce_test": ce's test accuracy or None}}}."""
    pairs: dict[str, dict[int, dict]] = {}
    for run in runs:
        if run.get("tag") != tag or (run["method"], run["epochs"]) != (method, epochs):
            continue
        untagged = by(runs, run["setting"], epochs, method, run["seed"])
        if untagged is None:
            continue
        ce = by(runs, run["setting"], epochs, "ce", run["seed"])
        differences = {key: run[key] - untagged[key] for key, _, _ in KEYS}
        differences["ce_test"] = ce["test_acc_last"] if ce else None
        pairs.setdefault(run["setting"], {})[run["seed"]] = differences
    return pairs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--method", default="mixnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "runs")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        raise SystemExit(f"{args.runs}: no such folder of suite result files")
    pairs = tag_differences(load_runs(args.runs), args.tag, args.method, args.epochs)
    if not pairs:
        raise SystemExit(f"{args.runs}: no {args.method} row at {args.epochs} epochs tagged {args.tag!r} "
                         "has an untagged twin")
    for setting, seeds in sorted(pairs.items()):
        for seed, differences in sorted(seeds.items()):
            ce_test = differences["ce_test"]
            print(f"{setting} seed {seed}: " + ", ".join(
                f"{label} {differences[key] * scale:+.4f}" for key, label, scale in KEYS)
                + (f" (ce test {100 * ce_test:.2f})" if ce_test is not None else ""))
        summary = []
        for key, label, scale in KEYS:
            values = [seeds[seed][key] * scale for seed in seeds]
            up = sum(value > 0 for value in values)
            summary.append(f"{label} {statistics.mean(values):+.4f} ({up}/{len(values)} up)")
        print(f"{setting} mean over {len(seeds)} seed(s): " + ", ".join(summary))
    return pairs


if __name__ == "__main__":
    main()
