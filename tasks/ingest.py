"""Stage 1: a source (digits, idx folder, image folder, manifest, .npz, tar shards) -> WebDataset shards.

One task per step of :mod:`mixnn_core.ingest`'s staged ingestion; inspecting a chunk of inputs
and writing a shard are per-chunk / per-shard tasks that a flow maps over.
"""

from __future__ import annotations

from prefect import get_run_logger, task

from mixnn_core import ingest
from tasks.retries import IO_RETRIES, transient_io_error


@task(name="plan-ingestion", retry_condition_fn=transient_io_error, **IO_RETRIES)
def plan_ingestion(source: str, out_dir: str, options: dict) -> int:
    """Open ``source`` and split its inputs into chunks; returns the number of chunks."""
    plan = ingest.plan_ingestion(source, out_dir, **options)
    get_run_logger().info("ingesting %d inputs of %s in %d chunks", plan.n_input, source, len(plan.chunks))
    return len(plan.chunks)


@task(name="inspect-chunk", retry_condition_fn=transient_io_error, **IO_RETRIES)
def inspect_chunk(out_dir: str, chunk: int) -> str:
    """Check the labels and decode the images of one chunk of inputs."""
    return str(ingest.inspect_chunk(out_dir, chunk))


@task(name="lay-out-shards")
def lay_out_shards(out_dir: str, parts: list[str]) -> list[str]:
    """Number the ingested samples and assign them to shards (``parts``: the chunks' tables)."""
    return ingest.lay_out_shards(out_dir)


@task(name="write-shard", retry_condition_fn=transient_io_error, **IO_RETRIES)
def write_shard(out_dir: str, shard: str) -> str:
    """Write one WebDataset shard."""
    return str(ingest.write_dataset_shard(out_dir, shard))


@task(name="finish-ingestion", retry_condition_fn=transient_io_error, **IO_RETRIES)
def finish_ingestion(out_dir: str, shards: list[str]) -> dict:
    """Put the shards (``shards``: their paths) into place and write the tables and summary."""
    summary = ingest.finish_ingestion(out_dir).to_dict()
    get_run_logger().info("ingested %d of %d samples (%d quarantined)", summary["n_ingested"],
                          summary["n_input"], summary["n_quarantined"])
    return summary
