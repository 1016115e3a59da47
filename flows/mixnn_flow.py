"""The ``mixnn`` flow: raw dataset -> corrected-label manifest, trained model and report.

    ingest (per chunk, per shard) -> [ingest test set] -> prepare labels (optional noise) ->
    per epoch: [extract features -> build index ->] train epoch (mixture fit, correction,
    mixing) -> export -> report

Every stage reads and writes files in the run directory; re-running the flow on the same run
directory skips finished stages and resumes training from the last completed epoch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import platform
import re
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.ingest_flow import ingest_dataset
from flows.scale_out import fan_out_runner
from mixnn_core.config import PRESETS, TrainConfig
from mixnn_core.files import read_json, write_json_atomic
from mixnn_core.trainer import resolve_device
from tasks.export import export_results
from tasks.features import extract_shard_features, publish_features, shard_names
from tasks.index import build_neighbor_index
from tasks.noise import prepare_labels
from tasks.prepare import prepare_run, release_lock
from tasks.report import write_run_report
from tasks.run_files import RunFiles
from tasks.train import train_epoch

CONFIGURATION_VERSION = 1
DEFAULT_RUNS_DIR = Path("data") / "runs"
NoiseMode = Literal["symmetric", "symmetric_exclusive", "asymmetric", "pairflip"]


def default_run_dir(source: str) -> str:
    """A new folder under ``data/runs/`` named after the time and the source."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem or "run").strip("-") or "run"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(DEFAULT_RUNS_DIR / f"{stamp}-{name}")


def train_config(preset: str, method: str, epochs: int, seed: int, device: str, model: str,
                 train_options: dict[str, Any] | None) -> TrainConfig:
    """The training configuration of a preset with the flow's parameters applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    options = dict(train_options or {})
    own = sorted(set(options) & {"method", "epochs", "seed", "device", "model"})
    if own:
        raise ValueError(f"train_options sets {own}: these are parameters of the flow itself; set them there")
    if preset == "cpu":
        config = PRESETS["cpu"](epochs, method, seed=seed, device=device, model=model, **options)
    else:
        config = PRESETS["paper"](method, epochs=epochs, seed=seed, device=device, **options)
        if model != "auto":
            config = config.with_changes(model=model)
    return config


def package_versions() -> dict[str, str]:
    names = ["mixnn", "torch", "torchvision", "prefect", "faiss-cpu", "scikit-learn", "numpy",
             "pandas", "pyarrow", "webdataset"]
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class StageClock:
    """Wall time spent in each stage (task calls included), summed over epochs."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, task, *args, **kwargs):
        started = time.perf_counter()
        try:
            return task(*args, **kwargs)
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@flow(name="mixnn-extract-features")
def extract_features(run_dir: str, epoch: int) -> str:
    """The evaluation pass of ``epoch``, one task per shard, each part of one Parquet dataset."""
    path = RunFiles(run_dir).features(epoch)
    if path.exists():
        return str(path)
    parts = extract_shard_features.map(unmapped(run_dir), unmapped(epoch), shard_names(run_dir))
    return publish_features(run_dir, epoch, [part.result() for part in parts])


@flow(name="mixnn", log_prints=True)
def mixnn(
    source: str = "digits",
    run_dir: str | None = None,
    method: Literal["mixnn", "ce", "mixup"] = "mixnn",
    epochs: int = 30,
    noise_mode: NoiseMode | None = None,
    noise_rate: float = 0.4,
    noise_dataset: str | None = None,
    seed: int = 0,
    device: str = "auto",
    test_source: str | None = None,
    model: str = "auto",
    preset: Literal["cpu", "paper"] = "cpu",
    labels_file: str | None = None,
    labels_column: str | None = None,
    labels_key_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    class_names: list[str] | None = None,
    train_options: dict[str, Any] | None = None,
    dask: bool = False,
    dask_address: str | None = None,
    dask_workers: int = 2,
) -> dict:
    """Find and fix wrong labels in an image-classification dataset with MixNN.

    Args:
        source: "digits" (scikit-learn's bundled digits) or a path to an MNIST-style idx
            folder, an image folder (one sub-folder per class), a CSV/Parquet manifest
            (image path + label columns), a .npz (image and label arrays) or a folder of
            WebDataset .tar shards (an image and a cls member per sample).
        run_dir: where everything is written; default a new folder under data/runs/.
            Re-running on the same run_dir resumes it.
        method: "mixnn" (default), "ce" (plain training) or "mixup" (random-pair mixup).
        epochs: training epochs, warm-up included.
        noise_mode: inject label noise for evaluation ("symmetric", "symmetric_exclusive",
            "asymmetric", "pairflip"); None (default) trains on the labels as given.
        noise_rate: rate of the injected noise.
        noise_dataset: built-in asymmetric map ("cifar10", "cifar100", "mnist",
            "fashion_mnist") for noise_mode="asymmetric".
        seed: seed of everything random (noise, initialisation, shuffling, augmentation).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        test_source: optional clean held-out set, same formats as source; its accuracy is
            reported per epoch (never used for training or any choice).
        model: "auto", "small_cnn", "preact_resnet18", "preact_resnet34", "resnet18", ...
        preset: "cpu" (schedule scaled to the epoch budget) or "paper" (reference CIFAR
            settings).
        labels_file: take labels from this CSV/Parquet/.npy/.npz instead of the source.
        labels_column: column (or .npz array) of labels_file holding the labels.
        labels_key_column: column of labels_file matching each sample's source reference
            (default: labels aligned by row).
        image_column: image path column of a manifest source.
        label_column: label column of a manifest source.
        class_names: class names, for sources that only have integer labels.
        train_options: any further TrainConfig field, e.g. {"num_neighbors": 2}.
        dask: fan the per-shard stages (ingestion, feature extraction) out over a Dask
            cluster.
        dask_address: scheduler address of an existing Dask cluster (default: a local cluster
            of dask_workers processes, started for this run).
        dask_workers: worker processes of the local Dask cluster.
    """
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    logger = get_run_logger()
    run_dir = run_dir or default_run_dir(source)
    config = train_config(preset, method, epochs, seed, device, model, train_options)
    ingest_options = {"labels_file": labels_file, "labels_column": labels_column,
                      "labels_key_column": labels_key_column, "image_column": image_column,
                      "label_column": label_column, "class_names": class_names}
    configuration = {
        "version": CONFIGURATION_VERSION, "source": source, "ingest": ingest_options,
        "test_source": test_source,
        "noise": {"mode": noise_mode, "rate": noise_rate, "dataset": noise_dataset, "seed": seed},
        "preset": preset, "train": {k: v for k, v in config.to_dict().items() if k != "device"},
        "device": device,
    }
    clock = StageClock()
    root = clock.run("prepare", prepare_run, run_dir, configuration)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(release_lock, root)
        fan_out = cleanup.enter_context(fan_out_runner(dask, dask_address, dask_workers))
        run = RunFiles(root)
        ingested = clock.run("ingest", ingest_dataset.with_options(task_runner=fan_out()),
                             source, root, ingest_options)
        if test_source is not None:
            clock.run("ingest", ingest_dataset.with_options(task_runner=fan_out()), test_source,
                      str(run.test_dir), {"class_names": ingested["class_names"], "npz_split": "test"})
        noise = clock.run("noise", prepare_labels, root, noise_mode, noise_rate, seed, noise_dataset)

        resumed_from = run.completed_epochs()
        if resumed_from:
            logger.info("resuming %s after %d completed epochs", root, resumed_from)
        progress = create_progress_artifact(progress=100.0 * resumed_from / config.epochs,
                                            description=f"training epochs of {root}")
        for epoch in range(resumed_from, config.epochs):
            if config.fits_mixture(epoch):
                clock.run("features", extract_features.with_options(task_runner=fan_out()),
                          root, epoch)
            if config.searches_neighbors(epoch):
                clock.run("index", build_neighbor_index, root, epoch)
            clock.run("train", train_epoch, root, epoch)
            update_progress_artifact(progress, 100.0 * (epoch + 1) / config.epochs)

        metrics = clock.run("export", export_results, root)
        counts = {key: ingested[key] for key in ("n_input", "n_ingested", "n_quarantined")}
        summary = {**counts, "method": method, "epochs": config.epochs, **metrics,
                   "wall_seconds": time.perf_counter() - started}
        report = clock.run("report", write_run_report, root, summary)
        wall = time.perf_counter() - started
        result = {
            "run_dir": root, "manifest": str(run.root / "manifest.parquet"),
            "model": str(run.root / "model"), "report": report, "counts": counts,
            "metrics": metrics,
        }
        write_json_atomic({
            "configuration": configuration, "device": str(resolve_device(config.device)),
            "versions": package_versions(), "started_at": started_at,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "wall_seconds": wall, "stage_seconds": clock.seconds,
            "resumed_from_epoch": resumed_from, "ingest": ingested, "noise": noise,
            "history": read_json(run.root / "history.json"), **result,
        }, run.run_json)
        logger.info("done in %.0f s: %d samples, %d suggested label changes, %d flagged; "
                    "manifest %s", wall, counts["n_ingested"], metrics["n_suggested_changes"],
                    metrics["n_label_issues"], result["manifest"])
        return result
