"""Choose training defaults on held-out NOISY labels, never on test labels.

    .venv/bin/python bench/tune.py --setting fmnist20k-sym80 --method ce --epochs 20 \
        --grid lr=0.01,0.02,0.05

Holds out 10 % of the setting's training set (stratified by the noisy label, seed 0), trains on
the rest with each value of the grid and reports, per epoch, the accuracy on the held-out noisy
labels. Under symmetric noise (labels replaced by uniformly drawn ones) that accuracy is a
scaled, shifted copy of the accuracy on clean labels, so it ranks models as the clean one would
and the choice needs no clean label. Under noise that sends a class to fixed other classes
(pair-flip, asymmetric) it is not: predicting the class a label is flipped to scores with the
flip rate (0.45 at pair-flip 45 %), so a model that learns the flips is rewarded. Measured at
pair-flip 45 %, 20 epochs: mixnn above ce on held-out noisy labels (0.4810 vs 0.4750), below it
on the clean test set (77.7 vs 80.9); BENCHMARKS.md. So each epoch is also scored on the
held-out rows a reference keeps (``reference_kept_rows``): no clean label either, and most of
the flipped labels are gone from those rows. A third score, ``class_balanced_scores``, weighs
every noisy-label class the same: under a one-way flip (a -> b, never back) plain accuracy on the
noisy labels rewards predicting b on images that could be a, the balanced one does not when the
true classes are equally common. The result names each score's best value (``best_by_score``;
``best`` is the noisy one's). ``--seed`` changes the noisy labels, the held-out split and the
training seed together.

2,000 held-out rows resolve about a point of accuracy (less under heavy noise, where the noisy
score moves by a fraction of the clean one). ``--folds K`` trains each value K times, on
stratified K-fold splits, so that every training row is held out once and scored by a model that
did not train on it: K times the cost, ten times the scored rows (about 3.2x finer), and each
model trains on (K - 1) / K of the rows (K = 10: 90 %, as the single split). The per-epoch scores
are then those of all K folds' held-out predictions together. Results go to
``bench/results/tune/<setting>-<method>-<field>=<values>[-<held fixed FIELD=VALUE>...][-s<seed>][-f<K>][-<tag>].json``
(the values in the name: two runs of one field over different values never share a file); an
existing result file is never replaced: ``--tag`` names a rerun (another budget, changed code
defaults). Each file records the commit of the code it ran and the Python files changed from it
(``code``) and the machine (``machine``).

``--plant SHARE`` also scores detection without clean labels: in each fold that share of the
training rows gets a label flipped along the reference's confident joint (the same flips for
every value), and each run's flags, ``label_quality`` and suggestions on its training rows are
scored against them (``bench/planted_flips.py``; file name ``...-plant<SHARE>``). The held-out
scores then come from models trained on the extra flips too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.planted_flips import plant_flips, planted_flip_scores  # noqa: E402
from bench.suite import (  # noqa: E402
    SETTINGS,
    code_version,
    config_assignments,
    load,
    machine_record,
    out_of_fold_probabilities,
    stratified_folds,
)
from mixnn_core.confident_learning import confident_joint, label_issues  # noqa: E402
from mixnn_core.config import FIELDS_CE_IGNORES, TrainConfig, cpu_preset  # noqa: E402
from mixnn_core.files import read_json, write_json_atomic  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402

HELD_OUT_SHARE = 0.1


def held_out_split(noisy: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(noisy))
    fit_rows, held_rows = train_test_split(rows, test_size=HELD_OUT_SHARE, stratify=noisy, random_state=seed)
    return np.sort(fit_rows), np.sort(held_rows)


def class_balanced_scores(right: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row (last axis), ``right`` (bool: the prediction equals the row's label ``labels``)
    divided by the share of the rows its label class holds times the number of classes present:
    the mean over the rows is the mean of the per-class accuracies (balanced accuracy).

    Why, on noisy labels: a one-way flip a -> b at rate r moves r n_a rows from a's label to b's.
    Plain accuracy then credits predicting b on an image x with P(b|x) + r P(a|x) against
    (1 - r) P(a|x) for a, so it pays a model to predict b on images that are as likely a. Each
    class weighed by 1 / its row count, b earns (P(b|x) + r P(a|x)) / (1 + r) against P(a|x):
    the same sign as P(b|x) - P(a|x) on the true labels, when the true classes are equally
    common."""
    counts = np.bincount(labels)
    return np.asarray(right, dtype=np.float64) * len(labels) / (np.count_nonzero(counts) * counts[labels])


SCORE_CURVES = {"noisy": "held_out_noisy_accuracy", "kept": "held_out_kept_accuracy",
                "balanced": "held_out_balanced_accuracy"}


def best_values(results: dict[str, dict]) -> dict[str, str]:
    """Per label-free held-out score (``SCORE_CURVES``), the grid value whose last epoch scores
    highest; the first value listed wins a tie. Over the committed tune pairs no one score agrees
    best with the true labels under every kind of noise (BENCHMARKS.md, forty-eighth and
    forty-ninth passes), so all three are reported and ``best`` stays the noisy one's."""
    return {score: max(results, key=lambda value: results[value][curve][-1])
            for score, curve in SCORE_CURVES.items()}


def held_out_splits(noisy: np.ndarray, seed: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) of each training: one ``held_out_split`` for ``folds`` = 1, else
    the ``folds`` splits of a stratified K-fold, whose held-out rows cover every row once."""
    if folds == 1:
        return [held_out_split(noisy, seed)]
    return stratified_folds(noisy, folds, seed)


def check_folds(parser: argparse.ArgumentParser, folds: int, noisy: np.ndarray, setting: str) -> None:
    """Stop with a usage error unless every one of ``folds`` (>= 1) can hold a row of each
    noisy-label class."""
    if folds < 1:
        parser.error(f"--folds must be >= 1, got {folds}")
    smallest_class = np.bincount(noisy)[np.unique(noisy)].min()
    if folds > smallest_class:
        parser.error(f"--folds {folds}: the smallest noisy-label class of {setting} has "
                     f"{smallest_class} rows, too few for one in each fold")


def read_by_ce(config: dict) -> dict:
    """The fields of a configuration (``TrainConfig.to_dict()``) a ce run reads; a field the
    configuration was recorded without reads as its default, so a field added later with a
    default that changes nothing does not make a cached ce result stale."""
    complete = TrainConfig.from_dict(config).to_dict()
    return {field: value for field, value in complete.items() if field not in FIELDS_CE_IGNORES}


def reference_run(setting: str, images: np.ndarray, noisy: np.ndarray, epochs: int, seed: int,
                  folder: Path, need_joint: bool = False) -> dict:
    """2-fold out-of-fold plain training over ALL rows (``epochs``, ``seed``): which rows
    (``rows_kept``, one bool per training row) it keeps once confident learning's label issues
    are removed, and its confident joint (``joint``, counts of given j, true k). No clean label
    is used; made once per setting, budget and seed (cached in ``folder``), the same for every
    candidate. A file from before the joint stays as it is, for the results already scored on
    its kept rows; ``need_joint`` then reads or makes a complete reference under the name
    ``...-with-joint.json``. Scored on the kept rows, a model that predicts the class labels are
    flipped to no longer earns the flip rate; what stays is a bias toward the reference's own
    mistakes among the kept rows (BENCHMARKS.md, eleventh pass)."""
    config = cpu_preset(epochs, "ce", **{**SETTINGS[setting].train_options(), "seed": seed})

    def cached_reference(path: Path) -> dict | None:
        reference = read_json(path) if path.exists() else None
        # none if the setting or a default a ce run reads changed (or a file from before "rows_kept")
        if reference is None or "rows_kept" not in reference or \
                read_by_ce(reference["config"]) != read_by_ce(config.to_dict()):
            return None
        return reference

    cached = folder / f"{setting}-e{epochs}-s{seed}.json"
    reference = cached_reference(cached)
    if reference is not None and ("joint" in reference or not need_joint):
        return reference
    if reference is not None:  # kept rows without a joint: leave them for the results read from them
        cached = folder / f"{setting}-e{epochs}-s{seed}-with-joint.json"
        reference = cached_reference(cached)
        if reference is not None:
            return reference
    probs = out_of_fold_probabilities(config, images, noisy, seed)
    reference = {"setting": setting, "epochs": epochs, "seed": seed, "config": config.to_dict(),
                 "rows_kept": (~label_issues(noisy, probs)).tolist(),
                 "joint": confident_joint(noisy, probs).tolist()}
    write_json_atomic(reference, cached)
    return reference


def reference_kept_rows(setting: str, images: np.ndarray, noisy: np.ndarray, epochs: int, seed: int,
                        folder: Path) -> np.ndarray:
    """Which rows (bool, one per training row) ``reference_run`` keeps."""
    return np.asarray(reference_run(setting, images, noisy, epochs, seed, folder)["rows_kept"], dtype=bool)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--method", default="ce")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--grid", required=True, help="FIELD=V1,V2,... (JSON values)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=1, help="K-fold: every row held out once (K x the cost)")
    parser.add_argument("--plant", type=float, default=0.0, metavar="SHARE",
                        help="flip this share of each fold's training labels along the reference's confident "
                             "joint and score how many the runs flag (bench/planted_flips.py)")
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tune")
    args = parser.parse_args(argv)
    if not 0 <= args.plant < 1:
        parser.error(f"--plant {args.plant}: the share of labels to flip must be in [0, 1)")
    fixed = config_assignments(parser, args.set)
    field, separator, values = args.grid.partition("=")
    if not separator or not field:
        parser.error(f"--grid {args.grid!r}: expected FIELD=V1,V2,...")
    grid = [config_assignments(parser, [f"{field}={text}"])[field] for text in values.split(",")]
    held_fixed = "".join(f"-{key}={value}" for key, value in fixed.items())
    seed = f"-s{args.seed}" if args.seed else ""
    folds = f"-f{args.folds}" if args.folds > 1 else ""
    tag = f"-{args.tag}" if args.tag else ""
    plant = f"-plant{args.plant}" if args.plant else ""
    tried = ",".join(str(value) for value in grid)
    out = args.out / f"{args.setting}-{args.method}-{field}={tried}{held_fixed}{seed}{folds}{plant}{tag}.json"
    if out.exists():  # the name holds no epoch budget: a run at another budget would replace it
        parser.error(f"{out} exists; move it away or pass --tag")
    setting = SETTINGS[args.setting]
    code = code_version()  # before training: the checkout may move while it runs
    data = load(setting, seed=args.seed)
    check_folds(parser, args.folds, data.noisy_labels, args.setting)
    splits = held_out_splits(data.noisy_labels, args.seed, args.folds)
    held_rows = np.concatenate([held for _, held in splits])
    held_noisy = data.noisy_labels[held_rows]
    reference = reference_run(args.setting, data.train.images, data.noisy_labels, args.epochs, args.seed,
                              args.out / "reference", need_joint=args.plant > 0)
    kept_rows = np.asarray(reference["rows_kept"], dtype=bool)
    kept = kept_rows[held_rows]
    fold_labels = [data.noisy_labels[fit_rows] for fit_rows, _ in splits]
    planted = None  # with --plant: per fold, which of its training rows were flipped
    if args.plant:  # the same flips for every value of the grid
        fold_labels, planted = zip(*(plant_flips(labels, args.plant, reference["joint"], [args.seed, fold])
                                     for fold, labels in enumerate(fold_labels)))
    results = {}
    for value in grid:
        config = cpu_preset(args.epochs, args.method, **{**setting.train_options(), "seed": args.seed, **fixed, field: value})
        predicted = np.empty((args.epochs, len(held_rows)), dtype=np.int64)  # per epoch, in held_rows order
        first_fits = []  # per fold: what the first mixture fit read (mixnn)
        flagged = []  # per fold with --plant: the run's outputs on its training rows
        start = 0
        for fold, (fit_rows, fold_held) in enumerate(splits):
            trainer = Trainer(config, data.train.images[fit_rows], fold_labels[fold], 10)
            rows = slice(start, start + len(fold_held))
            images = torch.as_tensor(data.train.images[fold_held])
            while trainer.epoch < config.epochs:
                trainer.run_epoch()
                predicted[trainer.epoch - 1, rows] = trainer.predict_proba(images).argmax(axis=1)
                right = predicted[trainer.epoch - 1, rows] == held_noisy[rows]
                print(f"{field}={value} fold {fold + 1}/{len(splits)} epoch {trainer.epoch}: held-out noisy-label "
                      f"accuracy {right.mean():.4f}, on the {kept[rows].sum()} rows the reference keeps "
                      f"{right[kept[rows]].mean():.4f}", flush=True)
            first_fits.append({"noise_strength": trainer.noise_strength,
                               "noise_concentration": trainer.noise_concentration})
            if args.plant:
                outputs = trainer.outputs(trainer.evaluation_pass().probs)  # as the suite's final outputs
                flagged.append((outputs.suggested_label, outputs.label_quality, outputs.is_label_issue))
            start = rows.stop
        right = predicted == held_noisy
        results[str(value)] = {"held_out_noisy_accuracy": right.mean(axis=1).tolist(),
                               "held_out_kept_accuracy": right[:, kept].mean(axis=1).tolist(),
                               "held_out_balanced_accuracy":
                                   class_balanced_scores(right, held_noisy).mean(axis=1).tolist(),
                               "held_out_predictions": predicted[-1].tolist(), "first_fits": first_fits,
                               "config": config.to_dict()}
        if args.plant:  # pooled over the folds, and each fold's alone (their spread)
            per_fold = [(data.noisy_labels[fit_rows], fold_labels[fold], planted[fold], kept_rows[fit_rows],
                         *flagged[fold]) for fold, (fit_rows, _) in enumerate(splits)]
            scores = planted_flip_scores(*(np.concatenate(column) for column in zip(*per_fold)))
            results[str(value)]["planted_flips"] = scores
            results[str(value)]["planted_flips_per_fold"] = [planted_flip_scores(*fold) for fold in per_fold]
            print(f"{field}={value} planted flips: {json.dumps(scores)}", flush=True)
    best_by_score = best_values(results)
    best = best_by_score["noisy"]
    print(f"best {field} (last epoch), by each held-out score: "
          + ", ".join(f"{score} {value}" for score, value in best_by_score.items()))
    if len(set(best_by_score.values())) > 1:
        print(f"the held-out scores disagree on the best {field}: no one of them ranks as the true labels "
              "would under every kind of noise (bench/score_agreement.py); weigh the candidates with "
              "bench/compare_tune.py")
    write_json_atomic({"setting": args.setting, "method": args.method, "epochs": args.epochs, "field": field,
                       "fixed": fixed, "seed": args.seed, "tag": args.tag, "folds": args.folds,
                       "plant": args.plant,
                       "held_rows": held_rows.tolist(), "best": best, "best_by_score": best_by_score,
                       "held_rows_kept": int(kept.sum()),
                       "code": code, "machine": machine_record(), "results": results}, out)
    return out


if __name__ == "__main__":
    main()
