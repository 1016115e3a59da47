"""Ingestion: turn an image-classification source into WebDataset shards plus tables.

``ingest(source, out_dir)`` reads one of these sources (detected from ``source``):

- ``"digits"``: scikit-learn's bundled 8x8 digits;
- an MNIST-style idx folder (``train-*`` pair, else ``t10k-*`` pair, optionally ``.gz``), or one
  idx images file (to pick the ``t10k-*`` pair of a folder that has both);
- an image folder: one sub-folder per class;
- a CSV or Parquet manifest: an image path column and a label column;
- a ``.npz``: image and label arrays, or concatenated JPEG bytes with offsets (CIFAR-10 layout);
- WebDataset ``.tar`` shards (a folder of them, or one): per sample an image member and a ``cls``
  member holding the integer label, read in place (never extracted).

Every input sample ends up either ingested (a shard sample and a ``dataset.parquet`` row) or in
``quarantine.parquet`` with a human readable reason, so ingested + quarantined = input.

Image rules:
- A dataset is 3-channel RGB if any ingested image has colour (some pixel whose R, G, B differ),
  else 1-channel L. Colour is judged on pixel content, not on file mode, so an RGB file of a grey
  picture counts as grey. Transparent images are composited on black.
- 16-bit grey (and 32-bit integer grey holding 16-bit values) is scaled from [0, 65535] to 0..255 (rounded); float images
  from [0, 1] or [0, 255].
- The target (H, W) is the most common size among ingested images (ties: the size met first);
  other images are resized to it with bilinear resampling and counted as ``n_resized``.

Label rules: integers are label ids (0 <= id < number of classes); strings are class names.
The class list is ``class_names`` if given, else the one the source defines (digits and idx
"0".."9", image folder sub-folder names, a npz ``classes`` array), else inferred from the labels
(sorted unique names, or "0".."max" for integer ids).

All output files are written to a temporary name and renamed into place; ``ingest_summary.json``
is written last and marks the folder as a complete ingestion.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import shutil
import stat
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from mixnn_core.files import read_json, write_json_atomic, write_parquet_atomic
from mixnn_core.shards import (
    SHARD_DIR,
    SHARD_GLOB,
    SHARD_PATTERN,
    ShardSample,
    read_images,
    replace_dir,
    sample_key,
    write_shard,
)

DATASET_TABLE = "dataset.parquet"
QUARANTINE_TABLE = "quarantine.parquet"
CLASSES_FILE = "classes.json"
SUMMARY_FILE = "ingest_summary.json"
DEFAULT_SHARD_SIZE = 5000  # samples per WebDataset shard; also the unit of per-shard feature extraction

IMAGE_COLUMNS = ("path", "image", "file", "filename", "image_path")
LABEL_COLUMNS = ("label", "class", "target")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
IDX_FILE_PAIRS = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
NPZ_IMAGE_KEYS = ("images", "x", "X")
NPZ_LABEL_KEYS = ("labels", "y")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
TAR_SUFFIX = ".tar"
TAR_IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm")
TAR_LABEL_EXTENSION = "cls"
MAX_LABEL_MEMBER_BYTES = 64  # a cls member holds a decimal integer; anything longer is not a label
DIGITS_MAX_VALUE = 16  # load_digits() pixels are counts 0..16
DIGIT_CLASS_NAMES = [str(digit) for digit in range(10)]  # digits, MNIST and idx folders


@dataclass(frozen=True)
class IngestSummary:
    """What an ingestion produced. ``image_shape`` is (C, H, W) of every ingested image."""

    n_input: int
    n_ingested: int
    n_quarantined: int
    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    source_kind: str  # "digits" | "idx" | "image_folder" | "manifest" | "npz" | "tar_shards"
    n_resized: int = 0  # ingested images resized to image_shape's (H, W)

    def to_dict(self) -> dict:
        """JSON-serialisable form (``image_shape`` as a list)."""
        return {**asdict(self), "class_names": list(self.class_names), "image_shape": list(self.image_shape)}

    @classmethod
    def from_dict(cls, data: dict) -> IngestSummary:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "image_shape": tuple(data["image_shape"])})


class SampleError(ValueError):
    """A problem with one input sample; its message is the quarantine reason."""


@dataclass(frozen=True)
class NoLabel:
    """Stands in for the label of a sample that has none; ``reason`` says why."""

    reason: str


@dataclass(frozen=True)
class RawLabels:
    """Labels as found, one per input sample (int, float, str, None or NoLabel)."""

    values: Sequence
    origin: str  # where they come from, for error messages


@dataclass(frozen=True)
class Source:
    """The input samples of a source in canonical order, not yet validated."""

    kind: str
    samples: list[str]  # identifies each input to a person: a row number or a file path
    source_refs: list[str]  # stable reference of each input, kept in dataset.parquet
    labels: RawLabels
    class_names: list[str] | None  # the class list the source defines itself, if any
    read_pixels: Callable[[int], np.ndarray]  # input i -> uint8 (H, W) or (H, W, 3); raises SampleError


# ---------------------------------------------------------------------------------------------
# Pixels


def scale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    """Map values in [0, full_scale] linearly onto 0..255, rounded; otherwise raise SampleError."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise SampleError("pixel values include NaN or infinity")
    low, high = values.min(), values.max()
    if low < 0 or high > full_scale:
        raise SampleError(f"pixel values span [{low:g}, {high:g}], outside [0, {full_scale:g}]")
    return np.rint(values * 255.0 / full_scale).astype(np.uint8)


def float_full_scale(values: np.ndarray) -> float:
    """The range float pixels are taken to use: [0, 1] when no finite value exceeds 1, else [0, 255]."""
    finite = values[np.isfinite(values)]
    return 1.0 if finite.size == 0 or finite.max() <= 1.0 else 255.0


def collapse_grey(pixels: np.ndarray) -> np.ndarray:
    """(H, W) for grey content, (H, W, 3) only when some pixel has colour."""
    if pixels.ndim == 3 and (pixels == pixels[..., :1]).all():
        return np.ascontiguousarray(pixels[..., 0])
    return pixels


def pil_to_pixels(image: Image.Image) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels of a loaded PIL image (see the module's image rules)."""
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if image.mode in SIXTEEN_BIT_MODES:
        return scale_to_uint8(np.asarray(image), 65535)
    if image.mode == "F":
        values = np.asarray(image)
        return scale_to_uint8(values, float_full_scale(values))
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        rgb = Image.alpha_composite(black, rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")
    return collapse_grey(np.asarray(rgb))


def decode_image(file) -> np.ndarray:
    """Pixels of an encoded image (a path or a binary file object); undecodable -> SampleError."""
    try:
        with Image.open(file) as image:
            image.load()
            return pil_to_pixels(image)
    except SampleError:
        raise
    except UnidentifiedImageError as error:  # its message repeats the file name: the sample says that
        raise SampleError("cannot decode image: not a recognised image format") from error
    except Exception as error:  # PIL raises many types for corrupt or truncated files
        raise SampleError(f"cannot decode image: {type(error).__name__}: {error}") from error


def read_image_file(path: Path, shown_as: str) -> np.ndarray:
    """Pixels of an image file; ``shown_as`` is how reasons name it."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise SampleError(f"file not found: {shown_as}") from None
    except OSError as error:
        raise SampleError(f"cannot read {shown_as}: {error.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise SampleError(f"not a regular file (a folder, FIFO or device): {shown_as}")
    if status.st_size == 0:
        raise SampleError("empty file (0 bytes)")
    return decode_image(path)


def resolved_inside(path: Path, roots: Sequence[Path], shown_as: str, root_name: str) -> Path:
    """``path`` with symlinks and ``..`` resolved, if that lies inside one of ``roots`` (resolved
    folders, the first named ``root_name`` in reasons); otherwise SampleError."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # symlink loop, NUL byte, ...
        raise SampleError(f"cannot resolve image path {shown_as!r}: {error}") from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SampleError(f"image path {shown_as!r} resolves outside the {root_name} {roots[0]}")
    return resolved


def fit_pixels(pixels: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """uint8 (channels, H, W) of (H, W) or (H, W, 3) pixels, bilinearly resized to ``size`` = (H, W)."""
    if pixels.shape[:2] != size:
        height, width = size
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
        return np.repeat(pixels, 3, axis=0) if channels == 3 else pixels
    return pixels.transpose(2, 0, 1)


def channels_last(images: np.ndarray, where: str) -> np.ndarray:
    """Image array as (N, H, W) for 1 channel or (N, H, W, 3), from (N,H,W), (N,H,W,C) or (N,C,H,W)."""
    if images.ndim == 4:
        if images.shape[3] in (1, 3):
            pass
        elif images.shape[1] in (1, 3):
            images = images.transpose(0, 2, 3, 1)
        else:
            raise ValueError(f"{where}: cannot find a channel axis of size 1 or 3 in shape {images.shape}")
        return images[..., 0] if images.shape[3] == 1 else images
    if images.ndim == 3:
        return images
    raise ValueError(f"{where}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {images.shape}")


def array_pixel_reader(images: np.ndarray, where: str) -> Callable[[int], np.ndarray]:
    """A reader of row i of an image array as uint8 pixels (non-uint8 rows converted or rejected)."""
    images = channels_last(images, where)
    if images.dtype == np.uint8:
        return lambda i: collapse_grey(images[i])
    if np.issubdtype(images.dtype, np.integer):
        full_scale = 255.0
    elif np.issubdtype(images.dtype, np.floating):
        full_scale = float_full_scale(images)
    else:
        raise ValueError(f"{where}: unsupported image dtype {images.dtype}; expected integers or floats")
    return lambda i: collapse_grey(scale_to_uint8(images[i], full_scale))


# ---------------------------------------------------------------------------------------------
# Sources


def row_numbers(n: int) -> list[str]:
    """References of the rows of an array or table source: "0", "1", ..."""
    return [str(i) for i in range(n)]


def array_source(
    kind: str, images: np.ndarray, labels: RawLabels, class_names: list[str] | None, where: str
) -> Source:
    """A source whose images are rows of an in-memory array."""
    refs = row_numbers(len(images))
    return Source(kind, refs, refs, labels, class_names, array_pixel_reader(images, where))


def unlabelled(n: int, reason: str) -> RawLabels:
    """Labels of a source that has none (the labels file must provide them)."""
    return RawLabels([NoLabel(reason)] * n, origin="none")


def digits_source() -> Source:
    """scikit-learn's 1,797 8x8 digits, pixels scaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = scale_to_uint8(digits.images, DIGITS_MAX_VALUE)
    labels = RawLabels(digits.target.tolist(), origin="sklearn load_digits()")
    return array_source("digits", images, labels, DIGIT_CLASS_NAMES, "digits")


def read_idx(path: Path, magic: int, n_dims: int) -> np.ndarray:
    """The uint8 array of an idx file (optionally gzipped), header and size checked."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read idx file: {error}") from error
    header_size = 4 * (1 + n_dims)
    if len(raw) < header_size:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the {header_size}-byte idx header")
    header = np.frombuffer(raw, dtype=">i4", count=1 + n_dims)
    if header[0] != magic:
        raise ValueError(f"{path}: idx magic number {header[0]}, expected {magic}")
    dims = tuple(int(d) for d in header[1:])
    expected_size = header_size + math.prod(dims)
    if len(raw) != expected_size:
        raise ValueError(f"{path}: {len(raw)} bytes, but its header {dims} means {expected_size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def idx_labels_beside(images_path: Path) -> Path:
    """The labels file that pairs with an idx images file (each ``.gz`` or not)."""
    images_name = images_path.name.removesuffix(".gz")
    labels_name = dict(IDX_FILE_PAIRS)[images_name]
    for candidate in (labels_name, labels_name + ".gz"):
        if (images_path.parent / candidate).is_file():
            return images_path.parent / candidate
    raise FileNotFoundError(f"{images_path} has no {labels_name}(.gz) beside it")


def find_idx_images(folder: Path) -> Path | None:
    """The images file of an idx folder: the train one, else the t10k one; None if neither."""
    for images_name, _ in IDX_FILE_PAIRS:
        for suffix in ("", ".gz"):
            if (folder / (images_name + suffix)).is_file():
                return folder / (images_name + suffix)
    return None


def idx_source(images_path: Path) -> Source:
    """An MNIST-style idx images file and the labels file beside it."""
    labels_path = idx_labels_beside(images_path)
    images = read_idx(images_path, IDX_IMAGES_MAGIC, 3)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, 1)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    raw_labels = RawLabels(labels.tolist(), origin=str(labels_path))
    return array_source("idx", images, raw_labels, DIGIT_CLASS_NAMES, str(images_path))


def is_hidden(name: str) -> bool:
    """Dot files and folders (.DS_Store, .ipynb_checkpoints) are not samples."""
    return name.startswith(".")


def image_folder_source(root: Path) -> Source:
    """One sub-folder per class; every non-hidden file below it is an input sample.

    Files directly in ``root`` belong to no class: they are inputs without a label. A symlinked
    class folder is read; symlinked folders deeper down are not followed (they could form a cycle).
    A file (symlink) resolving outside both ``root`` and its class folder is not read.
    """
    entries = [entry for entry in root.iterdir() if not is_hidden(entry.name)]
    class_names = sorted(entry.name for entry in entries if entry.is_dir())
    relative_paths = [PurePosixPath(entry.name) for entry in entries if not entry.is_dir()]
    for class_name in class_names:
        for folder, sub_folders, files in os.walk(root / class_name):
            sub_folders[:] = [name for name in sub_folders if not is_hidden(name)]
            folder_path = Path(folder).relative_to(root).as_posix()
            relative_paths += [PurePosixPath(folder_path, name) for name in files if not is_hidden(name)]
    relative_paths.sort(key=lambda path: path.parts)  # class folder first, then path inside it
    refs = [str(path) for path in relative_paths]
    labels = [
        path.parts[0] if len(path.parts) > 1 else NoLabel("file is not inside a class sub-folder")
        for path in relative_paths
    ]
    return Source(
        kind="image_folder",
        samples=refs,
        source_refs=refs,
        labels=RawLabels(labels, origin=f"class sub-folders of {root}"),
        class_names=class_names,
        read_pixels=lambda i: read_folder_image(root, refs[i]),
    )


def read_folder_image(root: Path, ref: str) -> np.ndarray:
    """Pixels of the file ``ref`` of an image folder, if it resolves inside the folder or its class folder."""
    class_folder = root / PurePosixPath(ref).parts[0]
    roots = [root.resolve(), class_folder.resolve()]
    return read_image_file(resolved_inside(root / ref, roots, ref, "dataset root"), ref)


def table_columns(path: Path) -> list[str]:
    """Column names of a CSV or Parquet table, without reading its rows."""
    if path.suffix.lower() == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    return list(pq.read_schema(path).names)


def read_table(path: Path, columns: list[str], text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Some columns of a CSV or Parquet table; CSV ``text_columns`` are kept as text ("007" stays)."""
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, usecols=columns, dtype={name: str for name in text_columns})
    return pd.read_parquet(path, columns=columns)


def pick_column(
    columns: list[str], requested: str | None, candidates: Sequence[str], what: str, path: Path, required: bool
) -> str | None:
    """The column to use: ``requested`` if given, else the first of ``candidates`` present."""
    if requested is not None:
        if requested not in columns:
            raise ValueError(f"{path}: no {what} column {requested!r}; its columns are {columns}")
        return requested
    found = next((name for name in candidates if name in columns), None)
    if found is None and required:
        raise ValueError(
            f"{path}: no {what} column (looked for {list(candidates)}); its columns are {columns}; "
            f"name one explicitly"
        )
    return found


def cell_text(value) -> str | None:
    """A table cell as text; None for a missing or empty cell (a float 3.0 reads "3")."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


def manifest_source(path: Path, image_column: str | None, label_column: str | None, labels_required: bool) -> Source:
    """A CSV or Parquet table of image paths (relative to its folder) and labels, one row per sample.

    A path resolving outside the manifest's folder (absolute elsewhere, ``..``, symlink) is not read.
    """
    columns = table_columns(path)
    image_col = pick_column(columns, image_column, IMAGE_COLUMNS, "image path", path, required=True)
    label_col = pick_column(columns, label_column, LABEL_COLUMNS, "label", path, required=labels_required)
    table = read_table(path, [image_col] + ([label_col] if label_col else []), text_columns=[image_col])
    image_paths = [cell_text(value) for value in table[image_col].tolist()]
    labels = (
        RawLabels(table[label_col].tolist(), origin=f"column {label_col!r} of {path}")
        if label_col
        else unlabelled(len(table), f"no label column in {path}")
    )
    root = path.parent.resolve()

    def read_pixels(i: int) -> np.ndarray:
        image_path = image_paths[i]
        if image_path is None:
            raise SampleError("missing image path")
        resolved = resolved_inside(root / image_path, [root], image_path, "manifest folder")
        return read_image_file(resolved, image_path)

    refs = row_numbers(len(table))
    samples = [image_path if image_path is not None else ref for image_path, ref in zip(image_paths, refs)]
    return Source("manifest", samples, refs, labels, None, read_pixels)


def load_npz(path: Path, keys: Sequence[str] | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """All array names of a .npz, and its arrays among ``keys`` (all when None); never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return list(npz.files), {key: npz[key] for key in npz.files if keys is None or key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: cannot read npz: {error}") from error


def npz_source(path: Path, split: str, labels_required: bool) -> Source:
    """A .npz of image/label arrays, or of concatenated JPEG bytes with offsets (``{split}_*`` keys)."""
    jpeg_key, offsets_key, split_labels_key = f"{split}_jpeg", f"{split}_offsets", f"{split}_labels"
    wanted = [jpeg_key, offsets_key, split_labels_key, "classes", *NPZ_IMAGE_KEYS, *NPZ_LABEL_KEYS]
    names, arrays = load_npz(path, wanted)
    if any(name.endswith("_jpeg") for name in names):
        for key in (jpeg_key, offsets_key):
            if key not in arrays:
                raise ValueError(f"{path}: no array {key!r} for npz_split={split!r}; its keys are {names}")
        read_pixels, n = jpeg_pixel_reader(path, split, arrays[jpeg_key], arrays[offsets_key])
        label_keys = [split_labels_key]
    else:
        image_key = next((key for key in NPZ_IMAGE_KEYS if key in arrays), None)
        if image_key is None:
            raise ValueError(
                f"{path}: no image array (looked for {list(NPZ_IMAGE_KEYS)} or '<split>_jpeg'); its keys are {names}"
            )
        read_pixels = array_pixel_reader(arrays[image_key], f"{path} array {image_key!r}")
        n = len(arrays[image_key])
        label_keys = list(NPZ_LABEL_KEYS)
    label_key = next((key for key in label_keys if key in arrays), None)
    if label_key is None:
        if labels_required:
            raise ValueError(f"{path}: no label array (looked for {label_keys}); its keys are {names}")
        labels = unlabelled(n, f"no label array in {path}")
    elif arrays[label_key].shape != (n,):
        raise ValueError(f"{path}: {label_key!r} has shape {arrays[label_key].shape}, expected ({n},) like the images")
    else:
        labels = RawLabels(arrays[label_key].tolist(), origin=f"array {label_key!r} of {path}")
    class_names = [str(name) for name in arrays["classes"].tolist()] if "classes" in arrays else None
    refs = row_numbers(n)
    return Source("npz", refs, refs, labels, class_names, read_pixels)


def jpeg_pixel_reader(
    path: Path, split: str, blob: np.ndarray, offsets: np.ndarray
) -> tuple[Callable[[int], np.ndarray], int]:
    """A reader of image i = the JPEG bytes ``blob[offsets[i]:offsets[i + 1]]``, and the image count."""
    offsets = offsets.astype(np.int64)
    valid = offsets.ndim == 1 and offsets.size > 0 and offsets[0] == 0 and offsets[-1] == blob.size
    if not valid or (np.diff(offsets) < 0).any():
        raise ValueError(f"{path}: {split}_offsets must rise from 0 to the size of {split}_jpeg ({blob.size} bytes)")

    def read_pixels(i: int) -> np.ndarray:
        encoded = blob[offsets[i] : offsets[i + 1]].tobytes()
        if not encoded:
            raise SampleError("empty image (0 bytes)")
        return decode_image(io.BytesIO(encoded))

    return read_pixels, offsets.size - 1


@dataclass
class TarSample:
    """The members of one WebDataset sample (one key) in a tar shard."""

    shard: Path
    key: str
    members: dict[str, tarfile.TarInfo]  # extension (after the first dot of the name) -> member
    problem: str | None = None  # why the sample must not be read, if it must not
    label: int | NoLabel | None = None  # from the cls member, set once all members are known


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset's (key, extension) of a member name: the extension starts at the base name's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be read (absolute or ``..`` name, link, special file), or None."""
    if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
        return f"member {member.name!r} has an absolute or '..' path"
    if member.issym() or member.islnk():
        return f"member {member.name!r} is a link"
    if not member.isfile():
        return f"member {member.name!r} is not a regular file (a device, FIFO or other special file)"
    return None


def tar_label(tar: tarfile.TarFile, sample: TarSample) -> int | NoLabel:
    """The integer label in a sample's cls member, or why there is none."""
    if sample.problem is not None:
        return NoLabel(sample.problem)
    member = sample.members.get(TAR_LABEL_EXTENSION)
    if member is None:
        return NoLabel(f"no {TAR_LABEL_EXTENSION} member (label)")
    if member.size > MAX_LABEL_MEMBER_BYTES:
        return NoLabel(f"member {member.name!r} holds {member.size} bytes, too long for a label")
    text = tar.extractfile(member).read().decode("utf-8", errors="replace").strip()
    try:
        return int(text)
    except ValueError:
        return NoLabel(f"member {member.name!r} holds {text!r}, not an integer label")


def read_tar_samples(shard: Path) -> list[TarSample]:
    """The samples of one uncompressed tar shard in order of first appearance, labels read.

    Only member headers and labels are read here; a sample gets a ``problem`` when one of its
    members is unsafe (:func:`unsafe_member`) or appears twice. Folder members are skipped.
    An unreadable shard (truncated inside a member, corrupt header, compressed) raises.
    """
    samples: dict[str, TarSample] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                key, extension = split_member_name(member.name)
                sample = samples.setdefault(key, TarSample(shard, key, {}))
                twice = f"member {member.name!r} appears twice" if extension in sample.members else None
                sample.problem = sample.problem or unsafe_member(member) or twice
                sample.members[extension] = member
            for sample in samples.values():
                sample.label = tar_label(tar, sample)
    except tarfile.TarError as error:
        raise ValueError(
            f"{shard}: unreadable tar shard after {len(samples)} samples ({error}); it must be an "
            f"uncompressed tar: repair or remove it"
        ) from error
    return list(samples.values())


def read_tar_image(sample: TarSample) -> np.ndarray:
    """Pixels of a sample's one image member, read in place from its shard."""
    if sample.problem is not None:
        raise SampleError(sample.problem)
    found = [extension for extension in sample.members if extension in TAR_IMAGE_EXTENSIONS]
    if len(found) != 1:
        what = "no image member" if not found else f"{len(found)} image members ({', '.join(found)})"
        raise SampleError(f"{what}; a sample needs one of {', '.join(TAR_IMAGE_EXTENSIONS)}")
    member = sample.members[found[0]]
    with open(sample.shard, "rb") as file:
        file.seek(member.offset_data)
        encoded = file.read(member.size)
    if len(encoded) < member.size:
        raise SampleError(f"member {member.name!r} is truncated")
    if not encoded:
        raise SampleError("empty image (0 bytes)")
    return decode_image(io.BytesIO(encoded))


def tar_shards_source(shards: list[Path]) -> Source:
    """WebDataset shards in the given order; source_ref "<shard name>/<key>".

    A key already seen in an earlier shard is a duplicate: that sample is rejected.
    """
    samples, shard_of_key = [], {}
    for shard in shards:
        for sample in read_tar_samples(shard):
            if sample.key in shard_of_key:
                sample.problem = f"duplicate key {sample.key!r}: already in {shard_of_key[sample.key]}"
                sample.label = NoLabel(sample.problem)
            shard_of_key.setdefault(sample.key, shard.name)
            samples.append(sample)
    refs = [f"{sample.shard.name}/{sample.key}" for sample in samples]
    origin = f"{TAR_LABEL_EXTENSION} members of the shards in {shards[0].parent}"
    labels = RawLabels([sample.label for sample in samples], origin=origin)
    return Source("tar_shards", refs, refs, labels, None, lambda i: read_tar_image(samples[i]))


def open_source(
    source: str | Path,
    *,
    image_column: str | None,
    label_column: str | None,
    npz_split: str,
    labels_required: bool,
) -> Source:
    """Detect the kind of ``source`` and open it. The plain string "digits" is scikit-learn's digits."""
    if isinstance(source, str) and source == "digits":
        return digits_source()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    if path.is_dir():
        idx_images = find_idx_images(path)
        if idx_images is not None:
            return idx_source(idx_images)
        if any(entry.is_dir() and not is_hidden(entry.name) for entry in path.iterdir()):
            return image_folder_source(path)
        shards = sorted(
            entry for entry in path.iterdir()
            if entry.suffix.lower() == TAR_SUFFIX and entry.is_file() and not is_hidden(entry.name)
        )
        if shards:
            return tar_shards_source(shards)
        raise ValueError(
            f"{path}: unrecognised source: a folder with neither idx files, class sub-folders nor .tar shards"
        )
    if path.name.removesuffix(".gz") in dict(IDX_FILE_PAIRS):
        return idx_source(path)
    suffix = path.suffix.lower()
    if suffix == TAR_SUFFIX:
        return tar_shards_source([path])
    if suffix in TABLE_SUFFIXES:
        return manifest_source(path, image_column, label_column, labels_required)
    if suffix == ".npz":
        return npz_source(path, npz_split, labels_required)
    raise ValueError(
        f"{path}: unrecognised source kind {suffix!r}; expected 'digits', an idx folder or images file, "
        f"an image folder, a CSV/Parquet manifest, a .npz or .tar shards"
    )


# ---------------------------------------------------------------------------------------------
# Labels


def read_labels_file(
    path: str | Path, labels_column: str | None, key_column: str | None, source_refs: list[str]
) -> RawLabels:
    """Labels for the source's samples from a CSV, Parquet, .npy or .npz file.

    Without ``key_column`` the file's rows align with the samples in canonical order and must be
    exactly as many. With it, rows match samples whose ``source_ref`` equals the key; samples
    without a row get no label.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    suffix = path.suffix.lower()
    if key_column is not None and suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: labels_key_column needs a CSV or Parquet labels file")
    if suffix in TABLE_SUFFIXES:
        columns = table_columns(path)
        label_col = pick_column(columns, labels_column, LABEL_COLUMNS, "label", path, required=True)
        if key_column is not None:
            pick_column(columns, key_column, (), "key", path, required=True)
            table = read_table(path, [key_column, label_col], text_columns=[key_column])
            return keyed_labels(path, table[key_column].tolist(), table[label_col].tolist(), source_refs)
        values = read_table(path, [label_col])[label_col].tolist()
        origin = f"column {label_col!r} of {path}"
    elif suffix in (".npy", ".npz"):
        values, origin = labels_array(path, labels_column)
    else:
        raise ValueError(f"{path}: unrecognised labels file type {suffix!r}; expected .csv, .parquet, .npy or .npz")
    if len(values) != len(source_refs):
        raise ValueError(f"{path} has {len(values)} labels but the source has {len(source_refs)} samples")
    return RawLabels(values, origin)


def labels_array(path: Path, labels_column: str | None) -> tuple[list, str]:
    """The 1-D label array of a .npy, or of a .npz (its ``labels_column`` array, or its only array)."""
    if path.suffix.lower() == ".npy":
        try:
            array, origin = np.load(path, allow_pickle=False), str(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read npy: {error}") from error
    else:
        _, arrays = load_npz(path)
        if labels_column is None and len(arrays) != 1:
            raise ValueError(f"{path}: name the label array with labels_column; its keys are {list(arrays)}")
        key = labels_column if labels_column is not None else next(iter(arrays))
        if key not in arrays:
            raise ValueError(f"{path}: no array {key!r}; its keys are {list(arrays)}")
        array, origin = arrays[key], f"array {key!r} of {path}"
    if array.ndim != 1:
        raise ValueError(f"{origin}: labels must be 1-D, got shape {array.shape}")
    return array.tolist(), origin


def keyed_labels(path: Path, keys: list, values: list, source_refs: list[str]) -> RawLabels:
    """Labels looked up by source reference; rows without a key match nothing, a repeated key raises."""
    row_of_ref = {}
    for row, key in enumerate(keys):
        ref = cell_text(key)
        if ref is None:
            continue
        if ref in row_of_ref:
            raise ValueError(
                f"{path}: key {ref!r} appears more than once (data rows {row_of_ref[ref]} and {row}, "
                f"counting from 0); give each sample one label"
            )
        row_of_ref[ref] = row
    missing = NoLabel(f"no label in {path}")
    labels = [values[row_of_ref[ref]] if ref in row_of_ref else missing for ref in source_refs]
    return RawLabels(labels, origin=str(path))


def normalize_label(raw) -> int | str:
    """A raw label as an id (int) or a class name (str); missing or malformed -> SampleError."""
    if isinstance(raw, NoLabel):
        raise SampleError(raw.reason)
    if raw is None or raw is pd.NA:
        raise SampleError("missing label")
    if isinstance(raw, (int, np.integer)):
        return int(raw)
    if isinstance(raw, (float, np.floating)):
        if math.isnan(raw):
            raise SampleError("missing label")
        if not float(raw).is_integer():
            raise SampleError(f"label {raw!r} is not a whole number")
        return int(raw)
    if isinstance(raw, str):
        if not raw.strip():
            raise SampleError("missing label (empty)")
        return raw
    raise SampleError(f"label {raw!r} has unsupported type {type(raw).__name__}")


def infer_class_names(labels: RawLabels) -> list[str]:
    """Sorted unique names, or "0".."max" for integer ids; malformed labels are left out."""
    names, ids = set(), set()
    for raw in labels.values:
        try:
            value = normalize_label(raw)
        except SampleError:
            continue
        (names if isinstance(value, str) else ids).add(value)
    if names and ids:
        raise ValueError(
            f"{labels.origin}: labels mix class names (e.g. {min(names)!r}) and integer ids "
            f"(e.g. {min(ids)}); give class_names or use one kind"
        )
    if names:
        return sorted(names)
    return [str(i) for i in range(max(ids) + 1)] if ids else []


def choose_class_names(given: Sequence | None, source_names: list[str] | None, labels: RawLabels) -> list[str]:
    """``given`` if any, else the source's own class list, else one inferred from the labels.

    A name holding a NUL character is refused: CSV readers end a field (or fail) at it, so the
    exported manifest.csv could not carry it.
    """
    if given is not None:
        names = [str(name) for name in given]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"class_names repeats {duplicates}")
        origin = "class_names"
    else:
        names = source_names if source_names is not None else infer_class_names(labels)
        origin = "the class names of the source" if source_names is not None else labels.origin
    with_nul = [name for name in names if "\x00" in name]
    if with_nul:
        raise ValueError(f"{origin}: class name {with_nul[0]!r} holds a NUL character; rename the class")
    return names


def label_id(raw, class_index: dict[str, int]) -> int:
    """The label id of a raw label given the class list (name -> id); invalid -> SampleError."""
    value = normalize_label(raw)
    if isinstance(value, str):
        if value not in class_index:
            raise SampleError(f"unknown label {value!r} (not among the {len(class_index)} class names)")
        return class_index[value]
    if not 0 <= value < len(class_index):
        raise SampleError(f"label {value} outside [0, {len(class_index)})")
    return value


# ---------------------------------------------------------------------------------------------
# Ingestion


WORK_DIR = "ingest-work"  # the stages' intermediate files; gone once the ingestion is complete
PLAN_FILE = "plan.json"
INSPECTION_TABLE = "inspection.parquet"


@dataclass(frozen=True)
class IngestPlan:
    """What every stage of one ingestion needs to know, kept as ``<work>/plan.json``.

    ``chunks`` are the ranges of input indices inspected together (one stage task each).
    """

    source: str
    options: dict  # open_labelled_source's keyword arguments
    class_names: list[str]
    n_input: int
    source_kind: str
    shard_size: int
    min_classes: int
    chunks: list[tuple[int, int]]


def open_labelled_source(
    source: str | Path,
    *,
    labels_file: str | Path | None = None,
    labels_column: str | None = None,
    labels_key_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    npz_split: str = "train",
) -> tuple[Source, RawLabels, list[str]]:
    """The source opened, its labels (the source's own or ``labels_file``'s) and the class list."""
    if labels_file is None and (labels_column is not None or labels_key_column is not None):
        raise ValueError("labels_column and labels_key_column describe a labels_file, but none was given")
    opened = open_source(
        source,
        image_column=image_column,
        label_column=label_column,
        npz_split=npz_split,
        labels_required=labels_file is None,
    )
    labels = (
        opened.labels
        if labels_file is None
        else read_labels_file(labels_file, labels_column, labels_key_column, opened.source_refs)
    )
    return opened, labels, choose_class_names(class_names, opened.class_names, labels)


def reopen(plan: IngestPlan) -> tuple[Source, RawLabels]:
    """The plan's source opened again (in another process, say), with its labels."""
    opened, labels, _ = open_labelled_source(plan.source, **plan.options)
    if len(opened.samples) != plan.n_input:
        raise ValueError(f"{plan.source} held {plan.n_input} samples when ingestion began, now {len(opened.samples)}")
    return opened, labels


def work_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / WORK_DIR


def read_plan(out_dir: str | Path) -> IngestPlan:
    data = read_json(work_dir(out_dir) / PLAN_FILE)
    return IngestPlan(**{**data, "chunks": [tuple(chunk) for chunk in data["chunks"]]})


def plan_ingestion(
    source: str | Path, out_dir: str | Path, *, shard_size: int = DEFAULT_SHARD_SIZE, min_classes: int = 2, **options
) -> IngestPlan:
    """Stage 1: open the source, settle its class list and split its inputs into chunks.

    Writes ``<out_dir>/ingest-work/plan.json``. A work folder left by an interrupted ingestion
    of the same plan is kept, so its finished chunks and shards are not redone; any other is
    cleared. ``options`` are :func:`open_labelled_source`'s.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    options = {key: str(value) if isinstance(value, Path) else value for key, value in options.items()}
    opened, _, names = open_labelled_source(source, **options)
    n_input = len(opened.samples)
    chunks = [(start, min(start + shard_size, n_input)) for start in range(0, n_input, shard_size)]
    plan = IngestPlan(str(source), options, names, n_input, opened.kind, shard_size, min_classes, chunks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)  # the folder is incomplete until the end
    work = work_dir(out_dir)
    if work.exists() and (not (work / PLAN_FILE).is_file() or read_plan(out_dir) != plan):
        shutil.rmtree(work)
    write_json_atomic(asdict(plan), work / PLAN_FILE)
    return plan


def chunk_part(out_dir: str | Path, chunk: int) -> Path:
    return work_dir(out_dir) / f"inspect-{chunk:06d}.parquet"


def inspect_chunk(out_dir: str | Path, chunk: int) -> Path:
    """Stage 2, per chunk: check each input's label, then decode its image.

    Writes a table with one row per input of the chunk: ``input`` index, ``sample`` and
    ``source_ref`` (as :class:`Source`), ``label`` id (-1 if quarantined), decoded ``height`` and
    ``width``, ``colour`` (3 channels) and the quarantine ``reason`` (None if it is ingested).
    """
    part = chunk_part(out_dir, chunk)
    if part.exists():
        return part
    plan = read_plan(out_dir)
    opened, labels = reopen(plan)
    class_index = {name: i for i, name in enumerate(plan.class_names)}
    start, stop = plan.chunks[chunk]
    rows = {name: [] for name in ("input", "label", "height", "width", "colour", "reason")}
    for i in range(start, stop):
        try:
            label = label_id(labels.values[i], class_index)
            pixels = opened.read_pixels(i)
            height, width, colour, reason = *pixels.shape[:2], pixels.ndim == 3, None
        except SampleError as error:
            label, height, width, colour, reason = -1, 0, 0, False, str(error)
        for name, value in zip(rows, (i, label, height, width, colour, reason)):
            rows[name].append(value)
    table = pd.DataFrame({
        "input": np.asarray(rows["input"], dtype=np.int64),
        "sample": pd.Series(opened.samples[start:stop], dtype="str"),
        "source_ref": pd.Series(opened.source_refs[start:stop], dtype="str"),
        "label": np.asarray(rows["label"], dtype=np.int64),
        "height": np.asarray(rows["height"], dtype=np.int64),
        "width": np.asarray(rows["width"], dtype=np.int64),
        "colour": np.asarray(rows["colour"], dtype=bool),
        "reason": pd.Series(rows["reason"], dtype="object"),
    })
    return write_parquet_atomic(table, part)


def check_ingestible(inspection: pd.DataFrame, class_names: list[str], source, min_classes: int) -> None:
    """Refuse a dataset with no ingested samples or fewer than ``min_classes`` classes among them."""
    rejected = inspection["reason"].notna()
    ingested = inspection.loc[~rejected]
    if ingested.empty:
        top_reasons = inspection["reason"].value_counts().head(3)
        reasons = "; ".join(f"{count} x {reason}" for reason, count in top_reasons.items())
        raise ValueError(f"{source}: no samples to ingest, all {len(inspection)} were quarantined ({reasons})")
    present = sorted(set(ingested["label"]))
    if len(present) < min_classes:
        names = [class_names[i] for i in present]
        raise ValueError(
            f"{source}: only {len(present)} class present among {len(ingested)} ingested samples "
            f"({names}, {int(rejected.sum())} quarantined); need at least {min_classes}"
        )


def lay_out_shards(out_dir: str | Path) -> list[str]:
    """Stage 3: combine the chunks' inspections and give each ingested input its sample id and shard.

    Sample ids number the ingested inputs in input order; shard k holds ids
    [k * shard_size, (k + 1) * shard_size). Raises when the dataset cannot be ingested, before any
    shard is written, leaving no work folder behind. Returns the shard file names.
    """
    plan = read_plan(out_dir)
    inspection = pd.concat([pd.read_parquet(chunk_part(out_dir, chunk)) for chunk in range(len(plan.chunks))],
                           ignore_index=True)
    try:
        check_ingestible(inspection, plan.class_names, plan.source, plan.min_classes)
    except ValueError:
        shutil.rmtree(work_dir(out_dir))
        with contextlib.suppress(OSError):
            Path(out_dir).rmdir()  # only if the ingestion made it and it is empty
        raise
    ingested = inspection["reason"].isna().to_numpy()
    sample_ids = np.full(len(inspection), -1, dtype=np.int64)
    sample_ids[ingested] = np.arange(ingested.sum())
    inspection["sample_id"] = sample_ids
    inspection["shard"] = pd.Series(
        [SHARD_PATTERN % (sample_id // plan.shard_size) if sample_id >= 0 else None for sample_id in sample_ids],
        dtype="object",
    )
    write_parquet_atomic(inspection, work_dir(out_dir) / INSPECTION_TABLE)
    return sorted(inspection["shard"].dropna().unique())


def image_layout(ingested: pd.DataFrame) -> tuple[tuple[int, int], int]:
    """The dataset's (H, W), the most common size (ties: the first met), and its channel count."""
    sizes = zip(ingested["height"].tolist(), ingested["width"].tolist())
    size = Counter(sizes).most_common(1)[0][0]
    return size, 3 if ingested["colour"].any() else 1


def write_dataset_shard(out_dir: str | Path, shard: str) -> Path:
    """Stage 4, per shard: read, fit and write the shard's samples into the work folder's shards."""
    path = work_dir(out_dir) / SHARD_DIR / shard
    if path.exists():
        return path
    plan = read_plan(out_dir)
    opened, _ = reopen(plan)
    inspection = pd.read_parquet(work_dir(out_dir) / INSPECTION_TABLE)
    ingested = inspection.loc[inspection["reason"].isna()]
    size, channels = image_layout(ingested)

    def shard_samples():
        for row in ingested.loc[ingested["shard"] == shard].itertuples():
            try:
                pixels = opened.read_pixels(row.input)
            except SampleError as error:
                raise ValueError(f"{row.sample} changed while being ingested: {error}") from error
            yield ShardSample(row.sample_id, fit_pixels(pixels, size, channels), row.label, row.source_ref)

    return write_shard(shard_samples(), path)


def finish_ingestion(out_dir: str | Path) -> IngestSummary:
    """Stage 5: the shards into place, the dataset and quarantine tables, classes and summary."""
    out_dir = Path(out_dir)
    plan = read_plan(out_dir)
    work = work_dir(out_dir)
    inspection = pd.read_parquet(work / INSPECTION_TABLE)
    rejected = inspection["reason"].notna()
    ingested, quarantined = inspection.loc[~rejected], inspection.loc[rejected]
    size, channels = image_layout(ingested)
    names = plan.class_names
    missing = sorted(set(ingested["shard"]) - {path.name for path in (work / SHARD_DIR).glob(SHARD_GLOB)})
    if missing:
        raise FileNotFoundError(f"{work / SHARD_DIR}: shards not written yet: {', '.join(missing)}")
    replace_dir(work / SHARD_DIR, out_dir / SHARD_DIR)
    table = pd.DataFrame(
        {
            "sample_id": ingested["sample_id"].to_numpy(),
            "key": pd.Series([sample_key(i) for i in ingested["sample_id"]], dtype="str"),
            "shard": pd.Series(ingested["shard"].to_numpy(), dtype="str"),
            "given_label": ingested["label"].to_numpy(),
            "given_label_name": pd.Series([names[label] for label in ingested["label"]], dtype="str"),
            "source_ref": pd.Series(ingested["source_ref"].to_numpy(), dtype="str"),
        }
    )
    write_parquet_atomic(table, out_dir / DATASET_TABLE)
    quarantine = pd.DataFrame({name: pd.Series(quarantined[name].to_numpy(), dtype="str")
                               for name in ("sample", "source_ref", "reason")})
    write_parquet_atomic(quarantine, out_dir / QUARANTINE_TABLE)
    write_json_atomic(names, out_dir / CLASSES_FILE)
    summary = IngestSummary(
        n_input=plan.n_input,
        n_ingested=len(ingested),
        n_quarantined=len(quarantined),
        num_classes=len(names),
        class_names=names,
        image_shape=(channels, *size),
        source_kind=plan.source_kind,
        n_resized=int(((ingested["height"] != size[0]) | (ingested["width"] != size[1])).sum()),
    )
    write_json_atomic(summary.to_dict(), out_dir / SUMMARY_FILE)
    shutil.rmtree(work)
    return summary


def ingest(
    source: str | Path,
    out_dir: str | Path,
    *,
    labels_file: str | Path | None = None,
    labels_column: str | None = None,
    labels_key_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    npz_split: str = "train",
    shard_size: int = DEFAULT_SHARD_SIZE,
    min_classes: int = 2,
) -> IngestSummary:
    """Ingest ``source`` into ``out_dir`` (shards, dataset/quarantine tables, classes, summary).

    ``labels_file`` replaces the source's labels (see :func:`read_labels_file`); ``labels_column``
    names its label column or array, ``labels_key_column`` its column of source references.
    ``image_column``/``label_column`` name a manifest's columns. ``npz_split`` picks the split of a
    JPEG-layout npz. ``min_classes`` classes must be present (training needs two; scoring a batch
    of new data with a trained model needs one). Raises before writing any shard when the dataset
    cannot be ingested.

    The stages run here one after another; a pipeline can run the per-chunk and per-shard ones
    in parallel (:func:`plan_ingestion` ... :func:`finish_ingestion`): the files are the same.
    """
    plan = plan_ingestion(
        source, out_dir, shard_size=shard_size, min_classes=min_classes, labels_file=labels_file,
        labels_column=labels_column, labels_key_column=labels_key_column, image_column=image_column,
        label_column=label_column, class_names=None if class_names is None else list(class_names),
        npz_split=npz_split,
    )
    for chunk in range(len(plan.chunks)):
        inspect_chunk(out_dir, chunk)
    for shard in lay_out_shards(out_dir):
        write_dataset_shard(out_dir, shard)
    return finish_ingestion(out_dir)


def load_dataset(out_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Images uint8 (N, C, H, W) in sample_id order and the dataset table of an ingestion."""
    out_dir = Path(out_dir)
    summary_path = out_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise FileNotFoundError(f"{out_dir} holds no complete ingestion (no {SUMMARY_FILE}); run ingest first")
    summary = IngestSummary.from_dict(read_json(summary_path))
    table = pd.read_parquet(out_dir / DATASET_TABLE)
    if not np.array_equal(table["sample_id"].to_numpy(), np.arange(len(table))):
        raise ValueError(f"{out_dir / DATASET_TABLE}: sample_id must be 0..{len(table) - 1} in order")
    return read_images(out_dir / SHARD_DIR, table, summary.image_shape), table
