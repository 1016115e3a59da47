"""The run directory: where each stage reads and writes, and in-process caches of its data.

The files in a run directory are the single source of truth between stages: a stage whose
output exists is finished, and a killed run resumes from the last completed epoch.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mixnn_core.config import TrainConfig
from mixnn_core.files import read_json
from mixnn_core.ingest import load_dataset
from mixnn_core.trainer import Trainer


class RunFiles:
    """Paths of everything a run writes under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def epoch_file(self, folder: str, epoch: int, suffix: str) -> Path:
        return self.root / folder / f"epoch={epoch:03d}{suffix}"

    def features(self, epoch: int) -> Path:
        return self.epoch_file("features", epoch, ".parquet")

    def feature_parts(self, epoch: int) -> Path:
        """Folder of the shards' parts of an epoch's features until all are written (then renamed
        ``features``)."""
        return self.epoch_file("features", epoch, ".parts")

    def feature_part(self, epoch: int, shard: str) -> Path:
        return self.feature_parts(epoch) / f"{Path(shard).stem}.parquet"

    def index(self, epoch: int) -> Path:
        return self.epoch_file("index", epoch, ".faiss")

    def neighbors(self, epoch: int) -> Path:
        return self.epoch_file("index", epoch, ".neighbors.npy")

    def mixture(self, epoch: int) -> Path:
        return self.epoch_file("mixture", epoch, ".json")

    def checkpoint(self, epoch: int) -> Path:
        return self.epoch_file("checkpoints", epoch, ".pt")

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    @property
    def labels(self) -> Path:
        return self.root / "labels.parquet"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def final_features(self) -> Path:
        return self.root / "features" / "final.parquet"

    @property
    def final_index(self) -> Path:
        """The trained model's feature index of the training set, for scoring new data."""
        return self.root / "index" / "final.faiss"

    def completed_epochs(self) -> int:
        """Number of epochs whose checkpoint exists (epochs are trained in order)."""
        done = [int(m.group(1)) for p in (self.root / "checkpoints").glob("epoch=*.pt")
                if (m := re.fullmatch(r"epoch=(\d+)\.pt", p.name))]
        return max(done) + 1 if done else 0


def _stamp(path: Path) -> tuple[str, int]:
    """Identifies a file's version, so caches notice a rewritten file."""
    return str(path.resolve()), path.stat().st_mtime_ns


@functools.lru_cache(maxsize=4)
def _load_dataset_cached(dataset_dir: str, table_stamp: tuple) -> tuple[np.ndarray, pd.DataFrame]:
    return load_dataset(dataset_dir)


def dataset_arrays(dataset_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame, list[str]]:
    """Images (N, C, H, W), dataset table and class names of an ingested dataset (cached)."""
    dataset_dir = Path(dataset_dir)
    images, table = _load_dataset_cached(str(dataset_dir), _stamp(dataset_dir / "dataset.parquet"))
    class_names = read_json(dataset_dir / "classes.json")
    return images, table, class_names


def training_labels(run: RunFiles) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels training sees (given, possibly with injected noise) and true labels when known."""
    labels = pd.read_parquet(run.labels)
    true = labels["true_label"].to_numpy(np.int64) if "true_label" in labels else None
    return labels["given_label"].to_numpy(np.int64), true


def test_arrays(run: RunFiles, class_names: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The held-out test set, its labels mapped onto the training classes by name."""
    if not (run.test_dir / "dataset.parquet").exists():
        return None, None
    images, table, test_classes = dataset_arrays(run.test_dir)
    position = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(test_classes) - set(position))
    if unknown:
        raise ValueError(f"test set classes {unknown} are not among the training classes")
    mapping = np.array([position[name] for name in test_classes], dtype=np.int64)
    return images, mapping[table["given_label"].to_numpy(np.int64)]


_TRAINERS: dict[str, Trainer] = {}


def checkout_trainer(run: RunFiles, epoch: int) -> Trainer:
    """The trainer after ``epoch`` completed epochs: the in-process one when it is at that
    epoch, else rebuilt from the checkpoint. Check it back in after a successful save; a
    stage that fails leaves no half-updated trainer behind."""
    recorded = read_json(run.config)
    config = TrainConfig.from_dict({**recorded["train"], "device": recorded["device"]})
    cached = _TRAINERS.pop(str(run.root.resolve()), None)
    if cached is not None and cached.epoch == epoch and cached.config == config:
        return cached
    images, _, class_names = dataset_arrays(run.root)
    given, true = training_labels(run)
    test_images, test_labels = test_arrays(run, class_names)
    trainer = Trainer(config, images, given, len(class_names), test_images=test_images,
                      test_labels=test_labels, true_labels=true)
    if epoch > 0:
        trainer.load(run.checkpoint(epoch - 1), remedy="; delete it to resume from the checkpoint before it")
    return trainer


def checkin_trainer(run: RunFiles, trainer: Trainer) -> None:
    _TRAINERS[str(run.root.resolve())] = trainer


def prune_checkpoints(run: RunFiles, keep: int = 2) -> None:
    """Keep the newest ``keep`` checkpoints (the newest is enough to resume; one spare)."""
    paths = sorted((run.root / "checkpoints").glob("epoch=*.pt"))
    for path in paths[:-keep]:
        os.remove(path)
