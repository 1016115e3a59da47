"""What the files a pipeline run writes and reads every mixing epoch cost, on real features.

    .venv/bin/python bench/epoch_files.py --n 60000 --repeats 3 --out bench/results/epoch_files-60k.json

Trains the cpu preset's small CNN one warm-up epoch on ``--n`` Fashion-MNIST training images
(one thread), takes its evaluation pass, and times what the pipeline does with it
(``tasks/features.py``, ``tasks/index.py``, ``tasks/train.py``) with the Parquet writer's default
options, without dictionary encoding (still snappy-compressed; what
``mixnn_core.evaluation_table.WRITE_OPTIONS`` chose) and with neither, alternately, ``--repeats``
times: the evaluation table written in shard parts of ``--shard-size`` rows, its ``feature`` column read
back from them (the index stage) and its ``loss`` and ``probs`` (the mixture stage). (Until the
thirty-fourth pass a run also read the parts back and wrote them again as one file: the first
result file, ``epoch_files-60k.json``, times that as ``combine_s``.) Then, once, the index file
and the neighbours file the index stage writes.
Every repeat's seconds are kept; files go to a scratch folder under ``--scratch``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import fashion_mnist  # noqa: E402
from bench.suite import code_version, machine_record  # noqa: E402
from bench.timestamps import utc_now  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.evaluation_table import evaluation_table, read_evaluation_table  # noqa: E402
from mixnn_core.files import read_vector_column  # noqa: E402
from mixnn_core.ingest import DEFAULT_SHARD_SIZE  # noqa: E402
from mixnn_core.knn import build_index, query_neighbors  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402

VARIANTS = {"writer_defaults": {}, "no_dictionary": {"use_dictionary": False},
            "no_dictionary_no_compression": {"use_dictionary": False, "compression": "none"}}


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``'s value and the seconds it took."""
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def seconds(fn, *args, **kwargs) -> float:
    return timed(fn, *args, **kwargs)[1]


def table_round_trip(table: pa.Table, folder: Path, shard_size: int, options: dict) -> dict:
    """The evaluation table's way through a run's files, each step timed: written in parts of
    ``shard_size`` rows into ``folder`` (which a run then renames, at no cost), read back."""
    folder.mkdir(parents=True, exist_ok=True)
    write_parts_s = sum(seconds(pq.write_table, table.slice(start, shard_size),
                                folder / f"part-{start:07d}.parquet", **options)
                        for start in range(0, table.num_rows, shard_size))
    read_feature_s = seconds(lambda: read_vector_column(read_evaluation_table(folder, ["feature"]), "feature"))
    read_mixture_s = seconds(lambda: read_vector_column(read_evaluation_table(folder, ["loss", "probs"]), "probs"))
    return {"write_parts_s": write_parts_s, "read_feature_s": read_feature_s, "read_loss_probs_s": read_mixture_s,
            "file_mb": sum(part.stat().st_size for part in folder.iterdir()) / 2**20,
            "total_s": write_parts_s + read_feature_s + read_mixture_s}


def index_files(index, neighbors: np.ndarray, folder: Path) -> dict:
    """The index stage's two files of an epoch: the faiss index and the neighbours, timed."""
    index_file = folder / "epoch.faiss"
    return {"index_write_s": seconds(faiss.write_index, index, str(index_file)),
            "index_file_mb": index_file.stat().st_size / 2**20,
            "neighbors_write_s": seconds(np.save, folder / "epoch.neighbors.npy", neighbors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="rows per part (default: ingestion's shard size)")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the files (default: system temp)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    train, _ = fashion_mnist()
    chosen = np.sort(np.random.default_rng(0).choice(len(train.labels), args.n, replace=False))
    trainer = Trainer(cpu_preset(10, "mixnn", warmup_epochs=1), train.images[chosen], train.labels[chosen], 10)
    trainer.train_epoch()
    evaluation = trainer.evaluation_pass()
    table = evaluation_table(np.arange(args.n), evaluation)
    runs = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for repeat in range(args.repeats):
            for name, options in VARIANTS.items():
                runs[name].append(table_round_trip(table, Path(scratch, f"{name}-{repeat}"), args.shard_size, options))
                print(name, {key: round(value, 3) for key, value in runs[name][-1].items()}, flush=True)
        index = build_index(evaluation.features, cpu_preset(10, "mixnn").knn_method)
        neighbors = query_neighbors(index, evaluation.features, 1)
        once = index_files(index, neighbors, Path(scratch))
    print(once, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured_at": utc_now(), "machine": machine_record(), "code": code_version(),
                                    "load_average": os.getloadavg(), "n": args.n, "shard_size": args.shard_size,
                                    "runs": runs, "once": once}, indent=2))


if __name__ == "__main__":
    main()
