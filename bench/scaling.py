"""Cost of each pipeline stage at several dataset sizes, for docs/scaling.md.

    .venv/bin/python bench/scaling.py --sizes 5000 10000 20000 40000 60000 --out bench/results/scaling.json

Uses Fashion-MNIST train (28x28 grey, from $MIXNN_DATA_ROOT or ../shared/data) subsampled to
each size, the small CNN (128-d features) of the cpu preset, one thread pool of this machine.
Measures, per size: ingestion to shards (images/s), loading the shards, one evaluation pass
(features + losses), the evaluation table's files as a run makes them (written in shard parts:
``feature_write_s``; read back by the index and mixture stages: ``feature_read_s``),
exact, HNSW and IVF index build + all-vs-all query (k = 1) and the index ``knn_method="auto"``
picks at that size (and writing it and the neighbours: ``index_write_s``), the trainer's mixture
fit, one plain (ce) training epoch and one mixnn mixing epoch's training (after a warm-up epoch each;
the two epochs interleaved so both see the same machine), and the process's peak resident memory.
With ``--repeats R`` every part of a mixing epoch is timed R times and the fastest kept: the
evaluation pass, the epochs, and (since the thirty-fifth pass; before, once) the evaluation
table's files, the "auto" index's build + query and its files, and the mixture fit (the first
call is the run's first fit, the later ones later fits); the single times are kept beside them
(``*_each``). The output records when, where and from which
code it was measured; ``bench/report.py`` reads the cost targets from such files
(``bench/results/scaling*.json``). ``--ivf-training-points-per-cell N`` measures the IVF cells
learnt from N samples a cell instead of ``knn.IVF_TRAINING_POINTS_PER_CELL``: a variant, not the
product, so its file must not be named ``scaling*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import fashion_mnist  # noqa: E402
from bench.epoch_files import index_files, table_round_trip, timed  # noqa: E402
from bench.suite import code_version, machine_record  # noqa: E402
from bench.timestamps import utc_now  # noqa: E402
from mixnn_core import knn  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.evaluation_table import WRITE_OPTIONS, evaluation_table  # noqa: E402
from mixnn_core.ingest import DEFAULT_SHARD_SIZE, ingest, load_dataset  # noqa: E402
from mixnn_core.knn import build_index, query_neighbors  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402


def fastest(repeats: int, fn, *args, **kwargs):
    """``fn``'s value and its fastest of ``repeats`` timed calls: this shared machine's speed
    swings by up to 2x between minutes, and the minimum is the least disturbed measurement."""
    runs = [timed(fn, *args, **kwargs) for _ in range(repeats)]
    return runs[-1][0], min(seconds for _, seconds in runs)


def measure(n: int, images: np.ndarray, labels: np.ndarray, scratch: Path, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(labels), n, replace=False))
    source = scratch / f"fmnist-{n}.npz"
    np.savez(source, images=images[chosen], labels=labels[chosen])
    out = scratch / f"ingested-{n}"
    _, ingest_s = timed(ingest, source, out)
    (pixels, _), load_s = timed(load_dataset, out)

    # One warm-up epoch each (it also sets up the kernels), then every later mixnn epoch mixes.
    trainer = Trainer(cpu_preset(10, "mixnn", warmup_epochs=1), pixels, labels[chosen], 10)
    ce_trainer = Trainer(cpu_preset(10, "ce"), pixels, labels[chosen], 10)
    trainer.train_epoch()
    ce_trainer.train_epoch()
    evaluation, eval_s = fastest(repeats, trainer.evaluation_pass)
    table = evaluation_table(np.arange(n), evaluation)
    files = [table_round_trip(table, scratch / f"features-{n}-{repeat}", DEFAULT_SHARD_SIZE, WRITE_OPTIONS)
             for repeat in range(repeats)]  # a new folder each time, as every epoch writes one
    row = {"n": n, "repeats": repeats, "ingest_s": ingest_s, "ingest_images_per_s": n / ingest_s,
           "load_s": load_s, "eval_pass_s": eval_s, "feature_file_mb": files[0]["file_mb"],
           "feature_files_each_s": [each["total_s"] for each in files]}
    fastest_files = min(files, key=lambda each: each["total_s"])
    row["feature_write_s"] = fastest_files["write_parts_s"]
    row["feature_read_s"] = fastest_files["read_feature_s"] + fastest_files["read_loss_probs_s"]
    for method in ("exact", "hnsw", "ivf"):
        index, build_s = timed(build_index, evaluation.features, method)
        _, query_s = timed(query_neighbors, index, evaluation.features, 1)
        row[f"{method}_build_s"], row[f"{method}_query_s"] = build_s, query_s
    auto = []  # the index a run builds at this size, then its files as a run saves them
    for _ in range(repeats):
        index, build_s = timed(build_index, evaluation.features, "auto")
        neighbors, query_s = timed(query_neighbors, index, evaluation.features, 1)
        written = index_files(index, neighbors, scratch)
        auto.append((build_s, query_s, written["index_write_s"] + written["neighbors_write_s"]))
    row["auto_each_s"] = [list(each) for each in auto]
    row["auto_build_s"], row["auto_query_s"], row["index_write_s"] = min(auto, key=lambda each: each[0] + each[1])
    # the trainer's own step: its first call also reads the run's noise strength, which the
    # mixing weights need
    fits = [timed(trainer.fit_clean_probability, evaluation.losses, evaluation.probs)[1] for _ in range(repeats)]
    row["mixture_fit_s"], row["mixture_fit_each_s"] = min(fits), fits
    ce_seconds, mixnn_seconds = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine
        ce_seconds.append(timed(ce_trainer.train_epoch)[1])
        mixnn_seconds.append(timed(trainer.train_epoch, neighbors)[1])
    assert all(epoch["phase"] == "mixnn" for epoch in trainer.history[1:]), trainer.history
    row["ce_epoch_s"], row["mixnn_train_s"] = min(ce_seconds), min(mixnn_seconds)
    row["ce_epoch_each_s"], row["mixnn_train_each_s"] = ce_seconds, mixnn_seconds  # in the order they ran
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(out)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 40000, 60000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaling.json")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time the evaluation pass and the epochs this often; keep the fastest")
    parser.add_argument("--ivf-training-points-per-cell", type=int, default=knn.IVF_TRAINING_POINTS_PER_CELL,
                        help="a variant's IVF k-means sample (not the product's: not in scaling*.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 2:
        parser.error(f"--repeats must be >= 1 and every --sizes >= 2, got {args.repeats} and {args.sizes}")
    if args.ivf_training_points_per_cell < 1:
        parser.error(f"--ivf-training-points-per-cell must be >= 1, got {args.ivf_training_points_per_cell}")
    variant = args.ivf_training_points_per_cell != knn.IVF_TRAINING_POINTS_PER_CELL
    if variant and args.out.name.startswith("scaling"):
        parser.error(f"{args.out.name}: the cost targets read scaling*.json; name a variant's file otherwise")
    knn.IVF_TRAINING_POINTS_PER_CELL = args.ivf_training_points_per_cell
    train, _ = fashion_mnist()
    images, labels = train.images[:, 0], train.labels
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in args.sizes:
            rows.append(measure(n, images, labels, Path(scratch), args.repeats))
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}),
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured_at": utc_now(), "machine": machine_record(),
                                    "code": code_version(), "load_average": os.getloadavg(),
                                    "ivf_training_points_per_cell": knn.IVF_TRAINING_POINTS_PER_CELL,
                                    "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
