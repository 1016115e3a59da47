"""Stage 1: a source (digits, idx folder, image folder, manifest, .npz) -> WebDataset shards."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger, task

from mixnn_core.ingest import ingest
from tasks.retries import IO_RETRIES, transient_io_error


@task(name="ingest", retry_condition_fn=transient_io_error, **IO_RETRIES)
def ingest_source(source: str, out_dir: str, options: dict) -> dict:
    """Ingest ``source`` into ``out_dir`` unless a finished ingestion is already there.

    Returns the ingestion summary (counts of input, ingested and quarantined samples).
    """
    summary_path = Path(out_dir) / "ingest_summary.json"
    logger = get_run_logger()
    if summary_path.exists():
        logger.info("ingestion of %s already done in %s", source, out_dir)
        return json.loads(summary_path.read_text())
    summary = ingest(source, out_dir, **options).to_dict()
    logger.info("ingested %d of %d samples from %s (%d quarantined)", summary["n_ingested"],
                summary["n_input"], source, summary["n_quarantined"])
    return summary
