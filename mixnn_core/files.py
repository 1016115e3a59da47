"""Atomic file writes, JSON and torch reads that name a damaged file, and Parquet vector columns.

Every file is written aside and renamed into place (``os.replace`` is atomic on one file
system), so a crash never leaves a half-written file where a reader expects a whole one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

# ``.<name>.<pid>.tmp`` (written aside) and ``.<name>.<pid>.old`` (moved aside to be deleted).
TEMPORARY_NAME = re.compile(r"\..+\.\d+\.(tmp|old)")


def temporary_sibling(path: Path, kind: str = "tmp") -> Path:
    """A temporary name beside ``path``: ``kind`` "tmp" to write aside, "old" to move aside."""
    return path.with_name(f".{path.name}.{os.getpid()}.{kind}")


def remove_temporaries(root: str | Path) -> list[Path]:
    """Delete the temporaries (see ``TEMPORARY_NAME``) a killed process left under ``root``.

    Only safe while no other process writes under ``root`` (a run holds its directory's lock).
    Returns what was deleted.
    """
    removed = []
    for folder, sub_folders, files in os.walk(root):  # symlinked folders are not followed
        for name in sub_folders + files:
            if TEMPORARY_NAME.fullmatch(name):
                path = Path(folder, name)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
        sub_folders[:] = [name for name in sub_folders if not TEMPORARY_NAME.fullmatch(name)]
    return removed


def replace_atomically(path: str | Path, write) -> Path:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_parquet_atomic(table: pa.Table | pd.DataFrame, path: str | Path, **options) -> Path:
    """Write ``table`` to ``path`` through a temporary file; ``options`` go to ``pq.write_table``."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return replace_atomically(path, lambda tmp: pq.write_table(table, tmp, **options))


def write_text_atomic(text: str, path: str | Path) -> Path:
    return replace_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(value, path: str | Path) -> Path:
    return write_text_atomic(json.dumps(value, indent=2, default=_json_default), path)


def read_json(path: str | Path):
    """The JSON value stored in ``path``; a file that is not valid JSON (hand-edited, or damaged
    outside this tool) raises a ValueError that names it."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def read_torch_state(path: str | Path, remedy: str = "") -> dict:
    """The tensors-only state ``torch.save`` wrote to ``path`` (loaded on the CPU); a file torch
    cannot read (truncated, or damaged outside this tool) raises a ValueError that names it,
    followed by ``remedy``. A missing file stays a FileNotFoundError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError, UnpicklingError...
        raise ValueError(f"{path} is not a readable torch file ({type(error).__name__}: "
                         f"{str(error)[:200]}){remedy}") from error


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def vector_column(rows: np.ndarray) -> pa.FixedSizeListArray:
    """A (N, D) array as a Parquet ``fixed_size_list<float32>[D]`` column."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1])


def read_vector_column(table: pa.Table, name: str) -> np.ndarray:
    """A ``fixed_size_list`` column back as a (N, D) float32 array."""
    column = table.column(name).combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
