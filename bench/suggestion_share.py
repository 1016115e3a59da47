"""How much of the given label a suggestion should keep: a diagnostic, not a tuning tool.

    .venv/bin/python bench/suggestion_share.py --setting fmnist20k-sym50 --epochs 20 \
        --shares 0 0.05 0.1 0.2

Trains one ``mixnn`` run (the cpu preset) and reads its suggestions with several shares of the
given label (``correction.suggestion_soft_labels``), next to the uniform soft labels themselves
and the final model's own predictions. It reads the TRUE training labels to score them, so its
numbers explain a choice; they must not make one (BENCHMARKS.md, fourth pass).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import SETTINGS, load  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.correction import suggestion_soft_labels  # noqa: E402
from mixnn_core.outputs import outputs_metrics, sample_outputs  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    args = parser.parse_args(argv)
    if not all(0.0 <= share <= 1.0 for share in args.shares):
        parser.error(f"--shares must lie in [0, 1], got {args.shares}")
    setting = SETTINGS[args.setting]
    data = load(setting, seed=0)
    config = cpu_preset(args.epochs, "mixnn", **setting.train_options())
    trainer = Trainer(config, data.train.images, data.noisy_labels, 10)
    trainer.fit()
    given_share = config.given_label_share(config.epochs)
    # the method's uniformly corrected soft labels, which suggestions are read from (the training
    # ones differ per sample under correction_rate="noisy_probability")
    readings = {f"uniform soft labels ({given_share:.2f} given)": trainer.uniform_soft_labels,
                "final model's predictions": trainer.evaluation_pass().probs}
    for share in args.shares:
        readings[f"suggestion, {share:g} given"] = suggestion_soft_labels(
            trainer.uniform_soft_labels, data.noisy_labels, given_share, share)
    results = {}
    for name, soft in readings.items():
        outputs = sample_outputs(data.noisy_labels, soft, trainer.p_clean)
        results[name] = outputs_metrics(outputs, data.train.labels)
        print(f"{name:36s} recovery {results[name]['label_recovery']:.4f}  F1 {results[name]['f1']:.3f}  "
              f"AUROC {results[name]['auroc']:.4f}", flush=True)
    return results


if __name__ == "__main__":
    main()
