"""Scoring a batch of newly arrived data and appending it to the versioned incoming manifest.

Layout of the output folder::

    manifest/part-v0001.parquet ...   the rows each version added (never rewritten);
                                      read them all with pandas.read_parquet("manifest/")
    batches/v0001/                    the ingested batch of that version (shards, tables)
    versions.json                     one entry per version: counts, source, model, time
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task

from mixnn_core.files import read_json, write_json_atomic, write_parquet_atomic
from mixnn_core.relabel import content_keys, load_exported_model, score_samples
from tasks.run_files import dataset_arrays

PART_PATTERN = re.compile(r"part-v(\d{4,})\.parquet")
INCOMING_SCHEMA_VERSION = "1"


def existing_parts(output_dir: Path) -> dict[int, Path]:
    """Version number -> part file of every version written so far."""
    folder = output_dir / "manifest"
    parts = {}
    for path in folder.glob("part-v*.parquet") if folder.exists() else []:
        if match := PART_PATTERN.fullmatch(path.name):
            parts[int(match.group(1))] = path
    return parts


def scored_keys(parts: dict[int, Path]) -> set[str]:
    return {key for path in parts.values()
            for key in pd.read_parquet(path, columns=["content_key"])["content_key"]}


@task(name="score-incoming")
def score_incoming(output_dir: str, staging_dir: str, model_run_dir: str, source: str,
                   num_neighbors: int) -> dict:
    """Score the staged batch's not-yet-scored samples and write them as the next version."""
    logger = get_run_logger()
    output = Path(output_dir)
    images, table, class_names = dataset_arrays(staging_dir)
    keys = np.array(content_keys(images, table["given_label_name"].tolist()), dtype=object)
    parts = existing_parts(output)
    new = ~np.isin(keys, list(scored_keys(parts)))
    # the same content twice within one batch is scored once
    new &= ~pd.Series(keys).duplicated().to_numpy()
    quarantined = len(pd.read_parquet(Path(staging_dir) / "quarantine.parquet"))
    outcome = {"n_batch": int(len(keys)), "n_new": int(new.sum()),
               "n_already_scored": int((~new).sum()), "n_quarantined": quarantined, "version": None}
    if not new.any():
        shutil.rmtree(staging_dir)
        logger.info("nothing new in %s: all %d samples were scored before", source, len(keys))
        return outcome

    exported = load_exported_model(model_run_dir)
    given = table["given_label"].to_numpy(np.int64)[new]
    scores = score_samples(exported, images[new], given, num_neighbors)
    version = max(parts, default=0) + 1
    names = np.asarray(class_names, dtype=object)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    rows = pd.DataFrame({
        "content_key": keys[new].astype(str),
        "version": version,
        "batch_sample_id": table["sample_id"].to_numpy(np.int64)[new],
        "source_ref": table["source_ref"].astype(str).to_numpy()[new],
        "given_label": given,
        "given_label_name": names[given].astype(str),
        **{column: scores[column].to_numpy() for column in scores},
        "suggested_label_name": names[scores["suggested_label"].to_numpy()].astype(str),
        "predicted_label_name": names[scores["predicted_label"].to_numpy()].astype(str),
        "scored_at": now,
    })
    batch_dir = output / "batches" / f"v{version:04d}"
    batch_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(batch_dir, ignore_errors=True)  # left by a crash before its part was written
    shutil.move(staging_dir, batch_dir)
    write_parquet_atomic(rows, output / "manifest" / f"part-v{version:04d}.parquet")
    log_path = output / "versions.json"
    log = read_json(log_path) if log_path.exists() else []
    log.append({**outcome, "version": version, "source": source, "model_run_dir": model_run_dir,
                "created_at": now, "schema_version": INCOMING_SCHEMA_VERSION,
                "n_label_issues": int(rows["is_label_issue"].sum())})
    write_json_atomic(log, log_path)
    outcome.update(version=version, n_label_issues=int(rows["is_label_issue"].sum()))
    logger.info("version %d: scored %d new samples of %s (%d already scored, %d flagged)",
                version, outcome["n_new"], source, outcome["n_already_scored"],
                outcome["n_label_issues"])
    return outcome
