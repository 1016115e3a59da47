"""Give a tagged set of suite rows the untagged names once their overrides became the default.

    .venv/bin/python bench/promote_rows.py --tag posterior-scale-floor-p-clean \
        --demote-tag mixture-p-clean --why 'clean_probability "posterior_scale_floor" became the default'

The suite's tables read the untagged rows (``bench/report.py``). When a change measured in
tagged rows (``bench/suite.py --set ... --tag T``) becomes the default, each tagged row takes
its untagged name and every row it displaces takes the name ``NAME-DEMOTE_TAG`` (with its final
arrays, ``--arrays``). Both record the move in ``retagged`` (the file name, tag and overrides
they ran under, the date and why; an earlier ``retagged`` is kept under ``earlier``), so no
row is lost or silently relabelled. Nothing is trained; ``--dry-run`` lists the moves.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import run_name  # noqa: E402
from mixnn_core.files import read_json, write_json_atomic  # noqa: E402

RUNS = ROOT / "bench" / "results" / "runs"


def moved(row: dict, old_file: str, new_stem: str, new_tag: str, why: str, date: str) -> dict:
    """``row`` under its new name and tag, its previous name, tag and overrides in ``retagged``."""
    record = {"file": old_file, "tag": row.get("tag", ""), "overrides": row.get("overrides", {}),
              "date": date, "why": why}
    if row.get("retagged"):
        record["earlier"] = row["retagged"]
    new = {**row, "tag": new_tag, "retagged": record}
    if new_tag == "":
        new["overrides"] = {}
    if row.get("final_arrays"):
        new["final_arrays"] = f"arrays/{new_stem}.npz"
    return new


def planned_moves(runs: Path, tag: str, demote_tag: str, methods: set[str], epochs: set[int],
                  settings: set[str] = frozenset()) -> tuple[list[tuple], list[tuple]]:
    """The demotions and the promotions, each a list of (source path, destination path,
    untagged stem); demotions run first (a promoted row takes the name a demoted one leaves).
    Empty ``epochs`` / ``settings``: every budget / setting."""
    demotions, promotions = [], []
    for path in sorted(runs.glob(f"*-{tag}.json")):
        row = read_json(path)
        if row.get("tag") != tag or row["method"] not in methods or (epochs and row["epochs"] not in epochs) \
                or (settings and row["setting"] not in settings):
            continue
        stem = run_name(row["setting"], row["method"], row["epochs"], row["seed"])
        displaced = runs / f"{stem}.json"
        if displaced.exists():
            demotions.append((displaced, runs / f"{stem}-{demote_tag}.json", stem))
        promotions.append((path, displaced, stem))
    return demotions, promotions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True, help="the tagged rows that become the untagged ones")
    parser.add_argument("--demote-tag", required=True, help="the tag the displaced untagged rows get")
    parser.add_argument("--why", required=True)
    parser.add_argument("--methods", nargs="+", default=["mixnn"])
    parser.add_argument("--epochs", nargs="*", type=int, default=[], help="only these budgets (default all)")
    parser.add_argument("--settings", nargs="*", default=[], help="only these settings (default all)")
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    date = datetime.date.today().isoformat()
    demotions, promotions = planned_moves(args.runs, args.tag, args.demote_tag, set(args.methods),
                                          set(args.epochs), set(args.settings))
    if not promotions:
        sys.exit(f"no {', '.join(args.methods)} row tagged {args.tag!r} in {args.runs}")
    for source, destination, stem in demotions:
        if destination.exists():
            sys.exit(f"{destination} exists: a row was already demoted to {args.demote_tag!r}")
    for source, _, _ in demotions + promotions:
        arrays = read_json(source).get("final_arrays")
        if arrays and not (args.runs / arrays).exists():
            sys.exit(f"{source} names final arrays {arrays} that are not in {args.runs}")
    moves = [(source, destination, f"{stem}-{args.demote_tag}", args.demote_tag)
             for source, destination, stem in demotions]
    moves += [(source, destination, stem, "") for source, destination, stem in promotions]
    for source, destination, new_stem, new_tag in moves:
        print(f"{source.name} -> {destination.name}")
        if args.dry_run:
            continue
        row = read_json(source)
        new = moved(row, source.name, new_stem, new_tag, args.why, date)
        if row.get("final_arrays"):
            (args.runs / row["final_arrays"]).rename(args.runs / new["final_arrays"])
        source.unlink()
        write_json_atomic(new, destination)


if __name__ == "__main__":
    main()
