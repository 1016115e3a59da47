"""WebDataset shards of an ingested dataset: writing them reproducibly, reading them back checked.

Layout: ``<out_dir>/shards/shard-000000.tar``, ``shard-000001.tar``, ... Each sample in a shard
has the key ``"%08d" % sample_id`` and three members:

- ``<key>.png``: the image, lossless PNG, mode L (1 channel) or RGB (3 channels);
- ``<key>.cls``: the given label id as decimal text;
- ``<key>.json``: ``{"sample_id": int, "source_ref": str}``.

Pixels cross this module's boundary as uint8 arrays (C, H, W), the layout the rest of mixnn uses.
The same samples always give the same shard bytes (fixed PNG options, tar ``mtime=0``).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import webdataset as wds
from PIL import Image

from mixnn_core.files import replace_atomically, temporary_sibling

SHARD_DIR = "shards"
SHARD_PATTERN = "shard-%06d.tar"
SHARD_GLOB = "shard-*.tar"
PNG_COMPRESS_LEVEL = 6  # zlib's default, fixed here so that PNG bytes do not depend on Pillow's


@dataclass(frozen=True)
class ShardSample:
    """One sample as it goes into a shard."""

    sample_id: int
    pixels: np.ndarray  # uint8 (C, H, W), C = 1 or 3
    label: int  # given label id
    source_ref: str  # where the sample came from in its source


def sample_key(sample_id: int) -> str:
    """The WebDataset key of a sample: its id as 8 zero-padded digits."""
    return "%08d" % sample_id


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of uint8 (C, H, W) pixels: mode L for C = 1, RGB for C = 3."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"expected uint8 pixels (C, H, W) with C 1 or 3, got {pixels.dtype} {pixels.shape}")
    channels_last = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(channels_last)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False
    )
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """uint8 (C, H, W) pixels of PNG bytes written by :func:`encode_png`."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image)
    return pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def write_shard(samples: Iterable[ShardSample], path: Path) -> Path:
    """Write ``samples`` as the one tar shard ``path`` (written aside, then renamed into place)."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file, wds.TarWriter(file, mtime=0) as writer:
            for sample in samples:
                writer.write(
                    {
                        "__key__": sample_key(sample.sample_id),
                        "png": encode_png(sample.pixels),
                        "cls": int(sample.label),
                        "json": {"sample_id": int(sample.sample_id), "source_ref": sample.source_ref},
                    }
                )

    return replace_atomically(path, write)


def replace_dir(new_dir: Path, target_dir: Path) -> None:
    """Put ``new_dir`` in place of ``target_dir`` (which may not exist) by renames."""
    if not target_dir.exists():
        os.replace(new_dir, target_dir)
        return
    # A folder cannot be renamed onto a non-empty one: move the old one aside first.
    old_dir = temporary_sibling(target_dir, "old")
    shutil.rmtree(old_dir, ignore_errors=True)
    os.replace(target_dir, old_dir)
    os.replace(new_dir, target_dir)
    shutil.rmtree(old_dir)


def read_images(shard_dir: Path, table: pd.DataFrame, image_shape: tuple[int, int, int]) -> np.ndarray:
    """All images of the shard set, uint8 (N, C, H, W), row i for the table's row i.

    ``table`` is the dataset table (rows in sample_id order, columns ``key`` and ``shard``).
    Every sample read must be the one the table expects at that position, in the shard the table
    names; a missing, extra or misplaced sample raises ``ValueError`` naming the shard.
    """
    shard_dir = Path(shard_dir)
    urls = sorted(str(path) for path in shard_dir.glob(SHARD_GLOB))
    if not urls:
        raise FileNotFoundError(f"no {SHARD_GLOB} files in {shard_dir}")
    keys = table["key"].tolist()
    shards = table["shard"].tolist()
    images = np.empty((len(keys), *image_shape), dtype=np.uint8)
    n_read = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        shard = os.path.basename(sample["__url__"])
        key = sample["__key__"]
        if n_read == len(keys):
            raise ValueError(f"{shard}: extra sample {key!r}; dataset.parquet lists only {len(keys)} samples")
        if (key, shard) != (keys[n_read], shards[n_read]):
            raise ValueError(
                f"{shard}: found sample {key!r} where dataset.parquet expects {keys[n_read]!r} "
                f"in {shards[n_read]}"
            )
        if "png" not in sample:
            raise ValueError(f"{shard}: sample {key!r} has no png member")
        pixels = decode_png(sample["png"])
        if pixels.shape != tuple(image_shape):
            raise ValueError(f"{shard}: sample {key!r} has shape {pixels.shape}, expected {tuple(image_shape)}")
        images[n_read] = pixels
        n_read += 1
    if n_read < len(keys):
        raise ValueError(
            f"the shards in {shard_dir} hold {n_read} samples but dataset.parquet lists {len(keys)}; "
            f"first missing: {keys[n_read]!r} in {shards[n_read]}"
        )
    return images
