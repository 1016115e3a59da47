"""Crash and resume: a `mixnn clean` killed with SIGKILL during ingestion, a training epoch,
export or the report, then run again on the same run directory, ends with the manifest of an
uninterrupted run, and leaves no temporaries behind.

(tests/test_pipeline.py kills once right after epoch 2's checkpoint.) Each kill starts the CLI
in its own session (its embedded Prefect server costs 10-25 s) and kills the whole process
group; the reruns call the flow in-process. The export and report kills start the CLI on a copy
of the reference run as it stood when training ended, so that it does not train again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from flows.mixnn_flow import mixnn
from mixnn_core.files import TEMPORARY_NAME
from mixnn_core.report import PLOT_FILES
from tests.conftest import DIGITS_RUN

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
NPZ_RUN = dict(epochs=1, seed=0)  # ingestion is what is tested here
NPZ_SAMPLES = 8000  # 2-3 s of ingestion on 2 cores, most of it writing shards
NPZ_BROKEN_ROWS = (5, 777)  # NaN pixels: quarantined, so the quarantine table is resumed too


def cli_args(source: str, run_dir: Path, run: dict) -> list[str]:
    """`mixnn clean` arguments for the flow parameters ``run`` (as given to ``mixnn(...)``)."""
    args = ["clean", source, "--run-dir", str(run_dir)]
    for name, value in run.items():
        if name == "source":
            continue
        if name == "train_options":
            args += [arg for field, option in value.items()
                     for arg in ("--train-option", f"{field}={json.dumps(option)}")]
        else:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def start_cli(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    """`python -m flows.cli ARGS` in its own session with Prefect home ``home``, output to ``log``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # embedded mode, whatever the test session uses
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=PROJECT, env=env,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], delay: float,
              log: Path, timeout: float = 300) -> None:
    """SIGKILL the process group of ``process`` ``delay`` seconds after ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"the run ended before the kill:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready within {timeout} s"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def temporaries(run_dir: Path) -> list[Path]:
    return [path for path in run_dir.rglob(".*") if TEMPORARY_NAME.fullmatch(path.name)]


def check_resumed_like(run_dir: Path, reference_dir: Path) -> None:
    """The rerun's manifest and quarantine equal the reference's; the report is whole."""
    for table in ("manifest.parquet", "quarantine.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / table),
                                      pd.read_parquet(reference_dir / table))
    assert temporaries(run_dir) == []
    for name in PLOT_FILES:
        with Image.open(run_dir / "report" / name) as image:
            image.verify()
    assert (run_dir / "report" / "report.md").read_text().startswith("#")


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory) -> Path:
    """One Prefect home for the CLI runs of this module (they run one after the other)."""
    return tmp_path_factory.mktemp("prefect-home")


# --- digits: kills in training, export and report ------------------------------------------

MOMENTS = {
    # a seeded random moment up to 2 s after the first checkpoint: features, index or training
    "training epoch": ("checkpoints/epoch=000.pt", random.Random(5).uniform(0.2, 2.0)),
    "export": ("features/final.parquet", 0.0),  # the first file export writes
    "report": ("report", 0.0),  # the report folder appears with its first plot
}
# What export and the report write: without them, a copy of a finished run is that run as it
# stood when its last epoch ended, so the CLI resumed on it goes straight to export.
EXPORT_OUTPUTS = ("manifest.parquet", "manifest.csv", "history.json", "model", "report", "run.json",
                  "features/final.parquet")


def trained_copy(reference_dir: Path, run_dir: Path) -> None:
    """``run_dir``: the reference run as it stood before export."""
    shutil.copytree(reference_dir, run_dir)
    for name in EXPORT_OUTPUTS:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize("moment", MOMENTS)
def test_digits_run_killed_during_a_stage_resumes_to_the_same_manifest(digits_run, cli_home, tmp_path,
                                                                     moment):
    reference_dir, _ = digits_run
    run_dir = tmp_path / "run"
    marker, delay = MOMENTS[moment]
    if moment != "training epoch":
        trained_copy(reference_dir, run_dir)
    process = start_cli(cli_args("digits", run_dir, DIGITS_RUN), cli_home, tmp_path / "cli.log")
    kill_when(process, lambda: (run_dir / marker).exists(), delay, tmp_path / "cli.log")
    assert not (run_dir / "run.json").exists(), "the kill came after the run had finished"

    result = mixnn(run_dir=str(run_dir), **DIGITS_RUN)
    assert result["counts"]["n_ingested"] == 1797
    check_resumed_like(run_dir, reference_dir)


# --- an 8,000-image .npz: a kill during ingestion ------------------------------------------


@pytest.fixture(scope="module")
def npz_source(tmp_path_factory) -> str:
    """Noisy copies of the digits (8x8, float pixels), two of them with a NaN pixel."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(digits.images), NPZ_SAMPLES)
    images = np.clip(digits.images[rows] / 16 + rng.normal(0, 0.08, (NPZ_SAMPLES, 8, 8)), 0, 1)
    images[list(NPZ_BROKEN_ROWS), 4, 4] = np.nan
    path = tmp_path_factory.mktemp("npz") / "noisy_digits.npz"
    np.savez(path, images=images.astype(np.float32), labels=digits.target[rows])
    return str(path)


@pytest.fixture(scope="module")
def npz_reference(prefect_server, npz_source, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("npz-reference") / "run"
    result = mixnn(source=npz_source, run_dir=str(run_dir), **NPZ_RUN)
    assert result["counts"] == {"n_input": NPZ_SAMPLES, "n_ingested": NPZ_SAMPLES - 2, "n_quarantined": 2}
    return run_dir


def test_npz_run_killed_during_ingestion_resumes_to_the_same_manifest(npz_source, npz_reference, cli_home,
                                                                     tmp_path):
    run_dir = tmp_path / "run"
    process = start_cli(cli_args(npz_source, run_dir, NPZ_RUN), cli_home, tmp_path / "cli.log")
    # shards are written one by one into ingest-work/shards, moved into place when all are written
    work_shards = run_dir / "ingest-work" / "shards"
    first_shard_written = lambda: (work_shards / "shard-000000.tar").exists()  # noqa: E731
    kill_when(process, first_shard_written, random.Random(7).uniform(0.0, 0.6), tmp_path / "cli.log")
    assert not (run_dir / "ingest_summary.json").exists(), "the kill came after ingestion"
    assert not (run_dir / "shards").exists()
    written = {path.name: path.stat().st_mtime_ns for path in work_shards.glob("shard-*.tar")}
    assert "shard-000000.tar" in written

    mixnn(source=npz_source, run_dir=str(run_dir), **NPZ_RUN)
    check_resumed_like(run_dir, npz_reference)
    # the shards finished before the kill were kept, not written again
    assert {name: (run_dir / "shards" / name).stat().st_mtime_ns for name in written} == written
    assert not (run_dir / "ingest-work").exists()
    for shard in (npz_reference / "shards").iterdir():
        assert (run_dir / "shards" / shard.name).read_bytes() == shard.read_bytes(), shard.name
