"""Does averaging the weights of a run's last epochs give a better model? Held out and paired.

    .venv/bin/python bench/weight_average.py --setting fmnist20k-sym20 --method mixnn --folds 5

Trains once per fold (``bench/tune.py``'s held-out splits and the rows its reference keeps) and
keeps the model's weights after each of the last ``--last`` epochs. For every N = 1..last it
averages the parameters of the last N, re-estimates the BatchNorm statistics on
``bn_refresh_samples`` un-mixed training images (as after a mixing epoch) and scores the held-out
noisy labels, the held-out rows the reference keeps, and the test set (reported, never used to
choose). ``own`` is the run's last model as it is. Every N scores the same trainings, so the
differences between them carry no training randomness. Results:
``bench/results/weight_average/<setting>-<method>-e<epochs>[-s<seed>]-f<K>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import SETTINGS, code_version, load, machine_record  # noqa: E402
from bench.tune import check_folds, held_out_splits, reference_kept_rows  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.files import write_json_atomic  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402


def averaged_parameters(snapshots: list[dict]) -> dict:
    """The element-wise mean of the floating-point parameters of ``snapshots`` (state dicts);
    BatchNorm running statistics and counters are taken from the last one (re-estimated later)."""
    averaged = dict(snapshots[-1])
    for name, value in snapshots[-1].items():
        if value.is_floating_point() and "running_" not in name:
            averaged[name] = torch.stack([snapshot[name] for snapshot in snapshots]).mean(dim=0)
    return averaged


def paired_difference(right: np.ndarray, right_own: np.ndarray) -> dict:
    """Mean and standard error of (right - right_own) over the same held-out rows (bool each):
    how much more often the averaged model is right than the run's own, on the noisy labels."""
    difference = right.astype(np.float64) - right_own.astype(np.float64)
    return {"held_out_noisy_minus_own": float(difference.mean()),
            "held_out_noisy_minus_own_se": float(difference.std(ddof=1) / np.sqrt(difference.size))}


def score_averages(trainer: Trainer, snapshots: list[dict], images: dict[str, torch.Tensor]) -> dict:
    """Predicted classes of ``images`` (name -> uint8 tensor) by the run's own last model
    (``own``) and by the average of its last N snapshots, N = 1..len(snapshots)."""
    refresh_rows = torch.randperm(trainer.images.shape[0], generator=torch.Generator().manual_seed(
        trainer.config.seed))[:trainer.config.bn_refresh_samples]
    predicted = {"own": {name: trainer.predict_proba(x).argmax(axis=1) for name, x in images.items()}}
    for n in range(1, len(snapshots) + 1):
        trainer.model.load_state_dict(averaged_parameters(snapshots[-n:]))
        trainer.refresh_batchnorm_statistics(refresh_rows)
        predicted[str(n)] = {name: trainer.predict_proba(x).argmax(axis=1) for name, x in images.items()}
    trainer.model.load_state_dict(snapshots[-1])
    return predicted


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--method", default="mixnn", choices=["ce", "mixup", "mixnn"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--last", type=int, default=6, help="weights kept after each of the last LAST epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "weight_average")
    parser.add_argument("--reference", type=Path, default=ROOT / "bench" / "results" / "tune" / "reference",
                        help="folder of the cached reference kept rows (shared with bench/tune.py)")
    args = parser.parse_args(argv)
    if not 1 <= args.last <= args.epochs:
        parser.error(f"--last must lie in [1, {args.epochs}], got {args.last}")
    seed = f"-s{args.seed}" if args.seed else ""
    out = args.out / f"{args.setting}-{args.method}-e{args.epochs}{seed}-f{args.folds}.json"
    if out.exists():
        parser.error(f"{out} exists; move it away first")
    setting = SETTINGS[args.setting]
    code = code_version()
    data = load(setting, seed=args.seed)
    check_folds(parser, args.folds, data.noisy_labels, args.setting)
    splits = held_out_splits(data.noisy_labels, args.seed, args.folds)
    kept = reference_kept_rows(args.setting, data.train.images, data.noisy_labels, args.epochs, args.seed,
                               args.reference)
    config = cpu_preset(args.epochs, args.method, **{**setting.train_options(), "seed": args.seed})
    test_images = torch.as_tensor(data.test.images)
    right: dict[str, dict[str, list]] = {}
    for fold, (fit_rows, held_rows) in enumerate(splits):
        trainer = Trainer(config, data.train.images[fit_rows], data.noisy_labels[fit_rows], 10)
        snapshots = []
        while trainer.epoch < config.epochs:
            trainer.run_epoch()
            if trainer.epoch > config.epochs - args.last:
                snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
            print(f"fold {fold + 1}/{len(splits)} epoch {trainer.epoch}", flush=True)
        predicted = score_averages(trainer, snapshots, {"held": torch.as_tensor(data.train.images[held_rows]),
                                                        "test": test_images})
        for name, by_images in predicted.items():
            scores = right.setdefault(name, {"held": [], "kept": [], "test": []})
            held_right = by_images["held"] == data.noisy_labels[held_rows]
            scores["held"].append(held_right)
            scores["kept"].append(held_right[kept[held_rows]])
            scores["test"].append(by_images["test"] == data.test.labels)
        print({name: round(float(np.concatenate(s["held"]).mean()), 4) for name, s in right.items()}, flush=True)
    own_held = np.concatenate(right["own"]["held"])
    results = {name: {"held_out_noisy_accuracy": float(np.concatenate(s["held"]).mean()),
                      **paired_difference(np.concatenate(s["held"]), own_held),
                      "held_out_kept_accuracy": float(np.concatenate(s["kept"]).mean()),
                      "test_acc_mean_over_folds": float(np.mean([t.mean() for t in s["test"]]))}
               for name, s in right.items()}
    for name, result in results.items():
        print(name, result)
    write_json_atomic({"setting": args.setting, "method": args.method, "epochs": args.epochs, "seed": args.seed,
                       "folds": args.folds, "last": args.last, "config": config.to_dict(),
                       "held_rows_kept": int(kept.sum()), "code": code, "machine": machine_record(),
                       "results": results}, out)
    return out


if __name__ == "__main__":
    main()
