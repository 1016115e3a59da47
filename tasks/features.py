"""Stage 3a, every mixing epoch: the evaluation pass over the training set, to Parquet.

The pass fans out over the dataset's shards (one task each, run by the flow's task runner: in
turn by default, in parallel on a Dask cluster when asked), each writing its part; once all are
written their folder is renamed ``features/epoch=NNN.parquet`` (a Parquet dataset, one file per
shard). A shard's numbers do not depend on where it ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task

from mixnn_core.evaluation_table import evaluation_table, write_evaluation_table
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


@task(name="publish-features")
def publish_features(run_dir: str, epoch: int, parts: list[str]) -> str:
    """``features/epoch=NNN.parquet``: the folder of the shards' ``parts``, renamed in one step,
    so the epoch's table exists whole or not at all (the parts are not copied again)."""
    run = RunFiles(run_dir)
    folder, path = run.feature_parts(epoch), run.features(epoch)
    held, expected = sorted(item.name for item in folder.iterdir()), sorted(Path(part).name for part in parts)
    if held != expected:
        raise RuntimeError(f"{folder} holds {held}, not the parts of this epoch's shards {expected}")
    os.replace(folder, path)
    return str(path)
