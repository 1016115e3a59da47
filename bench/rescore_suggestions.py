"""A suite row of a mixnn run scored again under the current label rules, from its final arrays.

    .venv/bin/python bench/rescore_suggestions.py bench/results/runs/fmnist20k-sym50-mixnn-e100-s0.json ...

The rules that suggest, flag and rank labels do not touch training: a run's labels follow from
its final per-sample arrays (``final_arrays`` of a row written by ``bench/suite.py --arrays``:
given and true labels, suggestion soft labels, p_clean, final predictions). For each row: the
arrays must reproduce it under the rules it was made with (the thirty-eighth pass's: the weighed
suggestion, the mixture flags; ``suggestion_rules.weighed_mixture_outputs``; recovery, detection
scores, AUROC and the fixed / broken counts equal), else a ValueError naming the field; then the
row is renamed NAME-mixture-flags.json (``tag`` and ``retagged`` say why) and written again
under its name with the label figures of ``mixnn_core.outputs.mixnn_outputs`` (the product's),
the previous ones kept under ``rescored``. Training figures (test accuracy, times) are the run's
own and stay. (The thirty-eighth pass rescored rows of confident learning's count with the
version of this script at commit e71285b.)
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suggestion_rules import check_reproduced, weighed_mixture_outputs  # noqa: E402
from mixnn_core.files import read_json, write_json_atomic  # noqa: E402
from mixnn_core.outputs import mixnn_outputs, outputs_metrics  # noqa: E402

TAG = "mixture-flags"
WHY = ("mixnn's is_label_issue follows MIXNN_LABEL_ISSUE_RULE (thirty-ninth pass: the labels likeliest wrong by "
       "the weighed posterior, as many as maximise the F1 it expects); this row flags every changed label and "
       "those a mixture fitted to the final model's loss on the given labels calls noisy")


def rescored_rows(row: dict, arrays: dict[str, np.ndarray], row_name: str) -> tuple[dict, dict]:
    """(the row as it was, tagged ``TAG``; the row with the current rule's label figures) of a
    mixnn suite ``row`` whose final ``arrays`` reproduce it; ValueError naming the field else."""
    if row["method"] != "mixnn" or row.get("tag"):
        raise ValueError(f"{row_name}: only an untagged mixnn row can be rescored "
                         f"(method {row['method']}, tag {row.get('tag')!r})")
    given, true, soft, probs = arrays["given"], arrays["true"], arrays["suggestion"], arrays["probs"]
    before = outputs_metrics(weighed_mixture_outputs(given, soft, arrays["p_clean"], probs, row["config"]["seed"]),
                             true)
    check_reproduced(before, row, f"{row_name}: its final arrays {row['final_arrays']}")
    outputs = mixnn_outputs(given, soft, arrays["p_clean"], probs)
    after = outputs_metrics(outputs, true)
    old = {**row, "tag": TAG, "retagged": {"file": row_name, "tag": "", "overrides": row.get("overrides", {}),
                                          "date": datetime.date.today().isoformat(), "why": WHY}}
    new = {**row, **after, "rescored": {
        "previous": {field: row[field] for field in after}, "suggestion_rule": outputs.suggestion_rule,
        "suggestion_temperature": outputs.suggestion_temperature, "label_issue_rule": outputs.label_issue_rule,
        "flag_cut": outputs.flag_cut, "arrays": row["final_arrays"], "date": datetime.date.today().isoformat(),
        "why": "the flag rule changed (thirty-ninth pass); training unchanged, so the label figures are "
               "recomputed from the run's final arrays, which reproduce the previous ones"}}
    return old, new


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, nargs="+", help="suite rows (.json) with final_arrays")
    args = parser.parse_args(argv)
    written = []
    for path in args.rows:
        renamed = path.with_name(f"{path.stem}-{TAG}.json")
        if renamed.exists():
            raise FileExistsError(f"{renamed} exists: {path.name} was rescored before")
        row = read_json(path)
        if "final_arrays" not in row:
            raise ValueError(f"{path}: no final_arrays (run the suite with --arrays)")
        with np.load(path.parent / row["final_arrays"], allow_pickle=False) as arrays:
            old, new = rescored_rows(row, dict(arrays), path.name)
        write_json_atomic(old, renamed)
        write_json_atomic(new, path)
        print(f"{path.name}: recovery {old['label_recovery']:.4f} -> {new['label_recovery']:.4f}, "
              f"F1 {old['f1']:.4f} -> {new['f1']:.4f}, AUROC {old['auroc']:.4f} -> {new['auroc']:.4f}")
        written += [renamed, path]
    return written


if __name__ == "__main__":
    main()
