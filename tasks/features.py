"""Stage 3a, every mixing epoch: the evaluation pass over the training set, to Parquet.

The pass fans out over the dataset's shards (one task each, run by the flow's task runner: in
turn by default, in parallel on a Dask cluster when asked), then the parts are combined into
``features/epoch=NNN.parquet``. A shard's numbers do not depend on where it ran.
"""

from __future__ import annotations

import shutil

from prefect import task

from mixnn_core.evaluation_table import combine_evaluation_tables, evaluation_table, write_evaluation_table
from tasks.run_files import RunFiles, checkin_trainer, checkout_trainer, dataset_arrays


def shard_names(run_dir: str) -> list[str]:
    """The dataset's shards in order (shard i holds the sample ids after shard i - 1's)."""
    _, table, _ = dataset_arrays(run_dir)
    return sorted(table["shard"].unique())


@task(name="extract-shard-features")
def extract_shard_features(run_dir: str, epoch: int, shard: str) -> str:
    """Evaluate one shard's samples with the model as it is at the start of ``epoch``."""
    run = RunFiles(run_dir)
    part = run.feature_part(epoch, shard)
    if not part.exists():
        _, table, _ = dataset_arrays(run.root)
        sample_ids = table.loc[table["shard"] == shard, "sample_id"].to_numpy()
        trainer = checkout_trainer(run, epoch)
        evaluation = trainer.evaluation_pass(int(sample_ids[0]), int(sample_ids[-1]) + 1)
        write_evaluation_table(evaluation_table(sample_ids, evaluation), part)
        checkin_trainer(run, trainer)
    return str(part)


@task(name="combine-features")
def combine_features(run_dir: str, epoch: int, parts: list[str]) -> str:
    """``features/epoch=NNN.parquet`` from the shards' parts, in sample order."""
    run = RunFiles(run_dir)
    path = run.features(epoch)
    combine_evaluation_tables(parts, path)
    shutil.rmtree(run.feature_parts(epoch))
    return str(path)
