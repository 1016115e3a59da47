"""``mixnn clean SOURCE ...``: run the ``mixnn`` flow with no Prefect server (embedded mode).

Exit code 0 on success; on failure a one-line reason on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys

# Offline defaults for Prefect's embedded server (see docs); a user's own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="mixnn", description="Find and fix wrong labels in "
                                   "image-classification datasets with MixNN.")
    commands = main.add_subparsers(dest="command", required=True)
    clean = commands.add_parser("clean", help="train through label noise and export corrected "
                                "labels, a model and a report")
    clean.add_argument("source", help='"digits", or a path to an idx folder, an image folder, '
                       "a CSV/Parquet manifest, a .npz, or WebDataset .tar shards")
    clean.add_argument("--run-dir", help="output folder (default: a new one under data/runs/); "
                       "an existing run folder is resumed")
    clean.add_argument("--epochs", type=int, default=30)
    clean.add_argument("--method", choices=["mixnn", "ce", "mixup"], default="mixnn")
    clean.add_argument("--noise-mode", choices=["symmetric", "symmetric_exclusive", "asymmetric",
                                                "pairflip"],
                       help="inject label noise for evaluation (default: none)")
    clean.add_argument("--noise-rate", type=float, default=0.4)
    clean.add_argument("--noise-dataset", help="asymmetric map: cifar10, cifar100, mnist, "
                       "fashion_mnist")
    clean.add_argument("--seed", type=int, default=0)
    clean.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda"')
    clean.add_argument("--test-source", help="clean held-out set, same formats as SOURCE")
    clean.add_argument("--model", default="auto")
    clean.add_argument("--preset", choices=["cpu", "paper"], default="cpu")
    clean.add_argument("--labels-file", help="take labels from this CSV/Parquet/.npy/.npz")
    clean.add_argument("--labels-column")
    clean.add_argument("--labels-key-column")
    clean.add_argument("--image-column")
    clean.add_argument("--label-column")
    clean.add_argument("--train-option", action="append", default=[], metavar="FIELD=VALUE",
                       help="any TrainConfig field, VALUE as JSON (repeatable), "
                       "e.g. --train-option num_neighbors=2")
    return main


def parse_train_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--train-option {pair!r}: expected FIELD=VALUE")
        try:
            options[field] = json.loads(value)
        except json.JSONDecodeError:
            options[field] = value
    return options


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # Registered before Prefect's own exit handlers, so it runs after them (last in, first
    # out): the reason is the last line, after the embedded server's shutdown message.
    failure: list[str] = []
    atexit.register(lambda: failure and print(failure[0], file=sys.stderr))
    from flows.mixnn_flow import mixnn  # after the environment is set: prefect reads it on import

    try:
        result = mixnn(
            source=args.source, run_dir=args.run_dir, method=args.method, epochs=args.epochs,
            noise_mode=args.noise_mode, noise_rate=args.noise_rate,
            noise_dataset=args.noise_dataset, seed=args.seed, device=args.device,
            test_source=args.test_source, model=args.model, preset=args.preset,
            labels_file=args.labels_file, labels_column=args.labels_column,
            labels_key_column=args.labels_key_column, image_column=args.image_column,
            label_column=args.label_column, train_options=parse_train_options(args.train_option))
    except Exception as error:  # one line for people and scripts; Prefect logged the traceback
        reason = " ".join(str(error).split())
        failure.append(f"mixnn: error: {type(error).__name__}: {reason}")
        return 1
    print(summary_text(result))
    return 0


def summary_text(result: dict) -> str:
    metrics, counts = result["metrics"], result["counts"]
    lines = [
        "",
        f"mixnn finished: {counts['n_ingested']} samples ingested, "
        f"{counts['n_quarantined']} quarantined",
        f"  suggested label changes: {metrics['n_suggested_changes']}, "
        f"flagged label issues: {metrics['n_label_issues']}",
    ]
    if "label_recovery" in metrics:
        lines.append(f"  labels right: given {metrics['given_label_accuracy']:.1%} -> suggested "
                     f"{metrics['label_recovery']:.1%} ({metrics['n_fixed']} fixed, "
                     f"{metrics['n_broken']} broken); detection AUROC {metrics['auroc']:.3f}")
    if "noise_strength" in metrics:
        from mixnn_core.report import strength_zeroed_under_flips
        reading = ("0 by noise_estimate=mixture_symmetric, as the first fit read flips"
                   if strength_zeroed_under_flips(metrics)
                   else "odds of a noisy label by the first mixture fit, at most 1")
        lines.append(f"  noise strength {metrics['noise_strength']:.3f} ({reading}; by default the mixing "
                     f"and the training-label correction run at this share of their full strength)")
    if "noise_concentration" in metrics:
        from mixnn_core.confident_learning import noise_kind
        kind = {"symmetric": "evenly over the classes",
                "flips": "mostly into particular other classes"}[noise_kind(metrics["noise_concentration"])]
        lines.append(f"  noise concentration {metrics['noise_concentration']:.3f} (the labels the first fit "
                     f"contradicts point {kind})")
    lines += [f"  manifest: {result['manifest']}", f"  model:    {result['model']}",
              f"  report:   {result['report']}"]
    if metrics["n_suggested_changes"]:
        lines.append("  before applying the suggested labels, check the report's audit sample "
                     "(changed labels drawn at random)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
