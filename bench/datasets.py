"""The benchmark datasets, read in place from the shared data folder (never copied).

The folder is ``$MIXNN_DATA_ROOT`` if set, else ``../shared/data`` beside the project. Each
loader returns uint8 images (N, C, H, W) and int64 labels, training and test split.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("MIXNN_DATA_ROOT", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,), the clean labels


def read_idx_pair(folder: Path, prefix: str) -> Split:
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz") as file:
        images = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz") as file:
        labels = np.frombuffer(file.read(), np.uint8, offset=8).astype(np.int64)
    return Split(images.copy(), labels)


def fashion_mnist() -> tuple[Split, Split]:
    """Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey."""
    folder = data_root() / "fashion-mnist"
    return read_idx_pair(folder, "train"), read_idx_pair(folder, "t10k")


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    images = [np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
              for i in range(len(offsets) - 1)]
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def cifar10(label_set: str = "clean_label") -> tuple[Split, Split, np.ndarray]:
    """CIFAR-10 (JPEG q75 copy): training and test splits with the CLEAN labels, and the
    training labels of CIFAR-10N's ``label_set`` (e.g. "worse_label", "aggre_label")."""
    with np.load(data_root() / "cifar10" / "cifar10_jpeg_q75.npz", allow_pickle=False) as data:
        train = Split(decode_jpegs(data["train_jpeg"], data["train_offsets"]), data["train_labels"].astype(np.int64))
        test = Split(decode_jpegs(data["test_jpeg"], data["test_offsets"]), data["test_labels"].astype(np.int64))
    with np.load(data_root() / "cifar10n" / "cifar10n_labels.npz", allow_pickle=False) as human:
        noisy = human[label_set].astype(np.int64)
    return train, test, noisy


def subset_rows(total: int, n: int, seed: int = 0) -> np.ndarray:
    """Rows (sorted) of ``n`` of ``total`` samples drawn without replacement; all when n >= total."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def subset(split: Split, n: int, seed: int = 0) -> Split:
    """``n`` samples drawn without replacement (in their original order); all when n >= N."""
    if n >= len(split.labels):
        return split
    chosen = subset_rows(len(split.labels), n, seed)
    return Split(split.images[chosen], split.labels[chosen])
