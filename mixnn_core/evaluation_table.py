"""The evaluation table of an epoch: one row per training sample, written to Parquet.

Columns: ``sample_id``; ``feature``, the model's (D,) penultimate representation, which the
neighbour search reads; ``loss``, cross-entropy against the current label, which the mixture is
fitted to; ``prediction``, the argmax class; ``probs``, the (C,) softmax the label correction
reads. A run writes one every mixing epoch, as a folder of parts (one file per shard, in sample
order: a Parquet dataset), and one file at the end.

The writer skips dictionary encoding (``WRITE_OPTIONS``; snappy compression stays): by default it
first collects each column's distinct values, which for floats that rarely repeat is wasted work
(it falls back to plain encoding once the dictionary outgrows its limit). On real features at
60,000 samples (``bench/epoch_files.py``, BENCHMARKS "Thirty-fourth pass", five alternating
repeats) that took a run's writes of the parts from a median 0.31 s to 0.12 s per epoch and the
files from 16.8 to 12.5 MB; dropping the compression too gave 0.08 s but 33.4 MB (the ReLU
features hold many zeros).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixnn_core.files import vector_column, write_parquet_atomic

WRITE_OPTIONS = {"use_dictionary": False}


def evaluation_table(sample_ids: np.ndarray, evaluation) -> pa.Table:
    """The table of ``evaluation`` (a ``Trainer.evaluation_pass``) for the samples ``sample_ids``."""
    return pa.table({
        "sample_id": pa.array(sample_ids, pa.int64()),
        "feature": vector_column(evaluation.features),
        "loss": pa.array(evaluation.losses, pa.float64()),
        "prediction": pa.array(evaluation.probs.argmax(axis=1), pa.int64()),
        "probs": vector_column(evaluation.probs),
    })


def write_evaluation_table(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` atomically, with ``WRITE_OPTIONS``."""
    return write_parquet_atomic(table, path, **WRITE_OPTIONS)


def read_evaluation_table(path: str | Path, columns: list[str]) -> pa.Table:
    """The ``columns`` of the evaluation table at ``path``, a file or a folder of parts (read in
    file-name order). Raises a ValueError naming ``path`` when its rows are not in increasing
    ``sample_id`` order, e.g. a folder holding a part that does not belong to it."""
    table = pq.read_table(path, columns=list(dict.fromkeys([*columns, "sample_id"])))
    sample_ids = table.column("sample_id").to_numpy()
    if (np.diff(sample_ids) <= 0).any():
        first = int(np.flatnonzero(np.diff(sample_ids) <= 0)[0]) + 1
        raise ValueError(f"{path}: rows are not in sample order (row {first} has sample_id {sample_ids[first]} "
                         f"after {sample_ids[first - 1]})")
    return table.select(columns)
