"""The ingestion subflow: a source -> WebDataset shards, fanned out over chunks and shards."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from mixnn_core.files import read_json
from mixnn_core.ingest import SUMMARY_FILE
from tasks.ingest import finish_ingestion, inspect_chunk, lay_out_shards, plan_ingestion, write_shard


@flow(name="mixnn-ingest", task_runner=ThreadPoolTaskRunner(max_workers=1))
def ingest_dataset(source: str, out_dir: str, options: dict) -> dict:
    """Ingest ``source`` into ``out_dir`` unless a finished ingestion is already there.

    ``options`` are :func:`mixnn_core.ingest.ingest`'s keyword arguments. Inputs are inspected in
    chunks and shards written one task each, by the flow's task runner (in turn by default, in
    parallel on a Dask cluster). Returns the ingestion summary (counts of input, ingested and
    quarantined samples).
    """
    summary_path = Path(out_dir) / SUMMARY_FILE
    if summary_path.exists():
        get_run_logger().info("ingestion of %s already done in %s", source, out_dir)
        return read_json(summary_path)
    n_chunks = plan_ingestion(source, out_dir, options)
    parts = inspect_chunk.map(unmapped(out_dir), range(n_chunks))
    shard_names = lay_out_shards(out_dir, [part.result() for part in parts])
    shards = write_shard.map(unmapped(out_dir), shard_names)
    return finish_ingestion(out_dir, [shard.result() for shard in shards])
