"""Stage 5: the human-readable report, in the run directory and as Prefect artifacts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mixnn_core.evaluation_table import read_evaluation_table
from mixnn_core.files import read_json
from mixnn_core.gmm import mixture_input
from mixnn_core.report import audit_sample, suspects_table, write_report
from tasks.retries import IO_RETRIES, transient_io_error
from tasks.run_files import RunFiles, dataset_arrays, training_labels

MAX_SNAPSHOTS = 4
TOP_SUSPECTS = 36


def mixture_snapshots(run: RunFiles, is_noisy: np.ndarray | None) -> list[dict]:
    """The fitted mixtures of up to ``MAX_SNAPSHOTS`` mixing epochs, spread over the run."""
    fitted = sorted(run.root.glob("mixture/epoch=*.json"))
    if not fitted:
        return []
    scale = read_json(run.config)["train"].get("mixture_scale", "linear")  # absent in older runs
    chosen = [fitted[i] for i in np.unique(np.linspace(0, len(fitted) - 1, MAX_SNAPSHOTS).round().astype(int))]
    snapshots = []
    for path in chosen:
        fit = read_json(path)
        features = run.features(fit["epoch"])
        if not features.exists():
            continue
        losses = read_evaluation_table(features, ["loss"]).column("loss").to_numpy()
        snapshot = {**fit, "losses": mixture_input(losses, scale)}
        if is_noisy is not None:
            snapshot["is_noisy"] = is_noisy
        snapshots.append(snapshot)
    return snapshots


@task(name="report", retry_condition_fn=transient_io_error, **IO_RETRIES)
def write_run_report(run_dir: str, summary: dict) -> str:
    """``report/report.md`` with its plots; also published as table and markdown artifacts."""
    run = RunFiles(run_dir)
    images, _, class_names = dataset_arrays(run.root)
    given, true = training_labels(run)
    manifest = pd.read_parquet(run.root / "manifest.parquet").drop(columns=["soft_label"])
    history = pd.DataFrame(read_json(run.root / "history.json"))
    suspects = suspects_table(manifest, TOP_SUSPECTS)
    report_path = write_report(
        run.root / "report", manifest=manifest, class_names=class_names, history=history,
        mixture_snapshots=mixture_snapshots(run, None if true is None else given != true),
        suspect_images=images[suspects["sample_id"].to_numpy()], summary=summary,
        top_k=TOP_SUSPECTS, audit_images=images[audit_sample(manifest)["sample_id"].to_numpy()])
    create_table_artifact(key="mixnn-suspected-label-errors",
                          table=json.loads(suspects.to_json(orient="records")),
                          description=f"Top suspected label errors of {run.root}")
    create_markdown_artifact(key="mixnn-report", markdown=report_path.read_text(),
                             description=f"mixnn report of {run.root}")
    return str(report_path)
