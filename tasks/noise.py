"""Stage 2: the labels training sees, with optional noise injected for evaluation."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task

from mixnn_core.files import write_json_atomic, write_parquet_atomic
from mixnn_core.noise import inject_noise
from tasks.run_files import RunFiles, dataset_arrays


@task(name="prepare-labels")
def prepare_labels(run_dir: str, noise_mode: str | None, noise_rate: float, seed: int,
                   noise_dataset: str | None = None) -> dict:
    """Write ``labels.parquet``: ``given_label`` per sample, plus ``true_label`` when noise is
    injected (the ingested labels are then kept as the truth for recovery and detection)."""
    run = RunFiles(run_dir)
    if run.labels.exists():
        return {"written": False}
    _, table, class_names = dataset_arrays(run.root)
    ingested = table["given_label"].to_numpy()
    labels = pd.DataFrame({"sample_id": table["sample_id"].to_numpy()})
    info = {"mode": None}
    if noise_mode is None:
        labels["given_label"] = ingested
    else:
        noisy, info = inject_noise(ingested, len(class_names), noise_mode, noise_rate, seed,
                                   dataset=noise_dataset)
        labels["given_label"] = noisy
        labels["true_label"] = ingested
        get_run_logger().info("injected %s noise at rate %.2f: %.1f %% of labels now wrong",
                              noise_mode, noise_rate, 100 * info["realised_noise_rate"])
    write_json_atomic(info, run.root / "noise.json")
    write_parquet_atomic(labels, run.labels)
    return info
