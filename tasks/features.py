"""Stage 3a, every mixing epoch: the evaluation pass over the training set, to Parquet."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from prefect import task

from mixnn_core.files import vector_column, write_parquet_atomic
from tasks.run_files import RunFiles, checkin_trainer, checkout_trainer


def evaluation_table(sample_ids: np.ndarray, evaluation) -> pa.Table:
    """Features, loss against the current label, prediction and probabilities per sample."""
    return pa.table({
        "sample_id": pa.array(sample_ids, pa.int64()),
        "feature": vector_column(evaluation.features),
        "loss": pa.array(evaluation.losses, pa.float64()),
        "prediction": pa.array(evaluation.probs.argmax(axis=1), pa.int64()),
        "probs": vector_column(evaluation.probs),
    })


@task(name="extract-features")
def extract_features(run_dir: str, epoch: int) -> str:
    """``features/epoch=NNN.parquet`` from the model as it is at the start of ``epoch``."""
    run = RunFiles(run_dir)
    path = run.features(epoch)
    if not path.exists():
        trainer = checkout_trainer(run, epoch)
        evaluation = trainer.evaluation_pass()
        write_parquet_atomic(evaluation_table(np.arange(len(evaluation.losses)), evaluation), path)
        checkin_trainer(run, trainer)
    return str(path)
