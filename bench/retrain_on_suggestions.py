"""Plain training again on a run's suggested labels: a question, not a feature.

    .venv/bin/python bench/retrain_on_suggestions.py --setting fmnist20k-sym50 --seed 0 --epochs 20

Does a fresh plain model trained on mixnn's suggested labels test better than plain training on
the given labels, and better than the same two-stage recipe without mixnn (plain training again
on plain training's own argmax)? Four trainings, each with the cpu preset, the setting's data,
noisy labels and seed: ``ce`` on the given labels, ``mixnn``, ``ce_on_mixnn_suggestions`` and
``ce_on_ce_suggestions``. Per training: test accuracy after the last epoch, the recovery of the
labels it trained on and of its own suggestions, and seconds. One JSON per (setting, seed,
epochs) under ``--out``; it reads the true training labels only to score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import SETTINGS, Data, load  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.files import write_json_atomic  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402


def train_and_score(method: str, labels: np.ndarray, data: Data, epochs: int, seed: int,
                    options: dict) -> tuple[dict, np.ndarray]:
    """Train ``method`` on ``labels``; its scores and its suggested labels."""
    started = time.perf_counter()
    trainer = Trainer(cpu_preset(epochs, method, seed=seed, **options), data.train.images, labels, 10,
                      test_images=data.test.images, test_labels=data.test.labels)
    trainer.fit()
    suggested = trainer.outputs().suggested_label
    return {"test_acc_last": trainer.history[-1]["test_acc"],  # measured after the last epoch
            "trained_label_accuracy": float((labels == data.train.labels).mean()),
            "suggestion_recovery": float((suggested == data.train.labels).mean()),
            "seconds": time.perf_counter() - started}, suggested


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrain")
    args = parser.parse_args(argv)
    setting = SETTINGS[args.setting]
    data = load(setting, args.seed)
    trainings: dict[str, dict] = {}

    def run(name: str, method: str, labels: np.ndarray) -> np.ndarray:
        trainings[name], suggested = train_and_score(method, labels, data, args.epochs, args.seed,
                                                     setting.train_options())
        print(name, trainings[name], flush=True)
        return suggested

    ce_suggestions = run("ce", "ce", data.noisy_labels)
    mixnn_suggestions = run("mixnn", "mixnn", data.noisy_labels)
    run("ce_on_mixnn_suggestions", "ce", mixnn_suggestions)
    run("ce_on_ce_suggestions", "ce", ce_suggestions)
    path = args.out / f"{args.setting}-s{args.seed}-e{args.epochs}.json"
    return write_json_atomic({"setting": args.setting, "seed": args.seed, "epochs": args.epochs,
                              "trainings": trainings}, path)


if __name__ == "__main__":
    main()
