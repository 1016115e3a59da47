"""The ``mixnn-relabel`` flow: score newly arrived data with a finished run's model.

    ingest the incoming batch -> skip samples scored before -> predict + neighbour vote ->
    append the new rows as the next version of the incoming manifest

Deployed as ``mixnn-relabel/relabel-incoming`` on a cron schedule (prefect.yaml).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow

from flows.ingest_flow import ingest_dataset
from mixnn_core.relabel import read_model_card
from tasks.prepare import acquire_lock, release_lock
from tasks.relabel import score_incoming


@flow(name="mixnn-relabel", log_prints=True)
def relabel(
    incoming: str,
    model_run_dir: str,
    output_dir: str | None = None,
    num_neighbors: int = 10,
    labels_file: str | None = None,
    labels_column: str | None = None,
    labels_key_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> dict:
    """Score newly arrived data and append it to a versioned manifest.

    Args:
        incoming: the new data, in any format `mixnn clean` ingests (idx folder, image folder,
            CSV/Parquet manifest, .npz, shard folder); its labels are the ones to check.
        model_run_dir: run directory of a finished clean-dataset run (its model/, index/ and
            manifest.parquet are used).
        output_dir: where the versioned manifest lives; default <model_run_dir>/incoming.
        num_neighbors: training samples whose corrected labels vote on each new sample.
        labels_file, labels_column, labels_key_column, image_column, label_column: as for
            `mixnn clean`.
    """
    output = Path(output_dir or Path(model_run_dir) / "incoming").expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    card = read_model_card(model_run_dir)
    acquire_lock(output)
    try:
        staging = output / "staging" / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        ingest_dataset(incoming, str(staging), {
            "labels_file": labels_file, "labels_column": labels_column,
            "labels_key_column": labels_key_column, "image_column": image_column,
            "label_column": label_column, "class_names": card["classes"], "min_classes": 1})
        return score_incoming(str(output), str(staging), str(Path(model_run_dir).resolve()),
                              incoming, num_neighbors)
    finally:
        release_lock(output)
