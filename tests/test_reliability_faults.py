"""Training and run-directory faults, and concurrent runs.

A diverging run stops with a clear error and keeps its last good checkpoint; an unusable run
directory (not creatable, too little free space, in use) is refused before any work; a lock
left by a killed process does not block; two runs at once in different directories do not
interfere, and the embedded Prefect servers they start listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flows.mixnn_flow import mixnn
from mixnn_core.trainer import TrainingDiverged
from tasks.prepare import RunDirectoryInUse, acquire_lock, release_lock
from tests.conftest import DIGITS_RUN
from tests.test_reliability_resume import PROJECT, cli_args, start_cli

# cosine schedule from lr 0.05 up to lr_min 100 over 6 epochs: the first epochs train, then the
# learning rate grows until the loss overflows (on the CPU, deterministically)
DIVERGING_RUN = dict(source="digits", epochs=6, seed=0, train_options={"lr": 0.05, "lr_min": 100.0})


# --- training faults -------------------------------------------------------------------------


def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(prefect_server, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="lower the learning rate") as raised:
        mixnn(run_dir=str(run_dir), **DIVERGING_RUN)
    failed_epoch = int(re.search(r"(?:at|in|before) epoch (\d+)", str(raised.value)).group(1))
    assert failed_epoch >= 2, "the warm-up should train before the learning rate explodes"
    last_good = run_dir / "checkpoints" / f"epoch={failed_epoch - 1:03d}.pt"
    assert f"the last good checkpoint is {last_good}" in str(raised.value)
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == [
        f"epoch={failed_epoch - 2:03d}.pt", last_good.name]  # nothing for the failed epoch
    state = torch.load(last_good, map_location="cpu", weights_only=True)
    assert state["epoch"] == failed_epoch
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())
    assert all(np.isfinite(row["train_loss"]) for row in state["history"])
    assert not (run_dir / "manifest.parquet").exists()

    # the lock was released, and a rerun resumes from that checkpoint into the same divergence
    with pytest.raises(TrainingDiverged) as again:
        mixnn(run_dir=str(run_dir), **DIVERGING_RUN)
    assert str(again.value) == str(raised.value)


def test_a_run_directory_that_cannot_be_created_is_refused_before_any_work(prefect_server, tmp_path):
    (tmp_path / "a-file").write_text("a regular file, not a folder")
    run_dir = tmp_path / "a-file" / "run"
    with pytest.raises(OSError, match=f"cannot create run directory {re.escape(str(run_dir))}: Not a directory"):
        mixnn(run_dir=str(run_dir), **{**DIGITS_RUN, "epochs": 1})


def test_too_little_free_space_is_refused_before_any_work(prefect_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXNN_MIN_FREE_BYTES", str(2**60))
    with pytest.raises(OSError, match=r"MiB free in .*; a run needs at least 1099511627776 MiB"):
        mixnn(run_dir=str(tmp_path / "run"), **{**DIGITS_RUN, "epochs": 1})
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == []  # not even a lock
    monkeypatch.setenv("MIXNN_MIN_FREE_BYTES", "lots")
    with pytest.raises(ValueError, match="MIXNN_MIN_FREE_BYTES='lots' is not a whole number"):
        mixnn(run_dir=str(tmp_path / "run"), **{**DIGITS_RUN, "epochs": 1})


def test_a_damaged_recorded_configuration_is_named_and_the_run_refused(prefect_server, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"train": {"epochs": 1,}')  # a hand edit gone wrong
    with pytest.raises(ValueError, match=f"{re.escape(str(run_dir / 'config.json'))} is not valid JSON"):
        mixnn(run_dir=str(run_dir), **{**DIGITS_RUN, "epochs": 1})
    assert not (run_dir / "dataset.parquet").exists()
    assert not (run_dir / ".lock").exists()  # released on the way out


# --- the run directory's lock ----------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from tasks.prepare import acquire_lock
acquire_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_directory_in_use_is_refused_and_a_killed_holder_does_not_block(prefect_server, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], cwd=PROJECT,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryInUse, match=f"in use by process {holder.pid} on "
                                                    f"{re.escape(socket.gethostname())}"):
            mixnn(run_dir=str(run_dir), **{**DIGITS_RUN, "epochs": 1})
        assert not (run_dir / "dataset.parquet").exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert f'"pid": {holder.pid}' in (run_dir / ".lock").read_text()  # left by a dead process

    result = mixnn(run_dir=str(run_dir), **{**DIGITS_RUN, "epochs": 1})
    assert result["counts"]["n_ingested"] == 1797
    assert not (run_dir / ".lock").exists()  # released at the end


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    acquire_lock(tmp_path)
    try:
        with pytest.raises(RunDirectoryInUse, match="in use by another run of this process"):
            acquire_lock(tmp_path)
    finally:
        release_lock(tmp_path)
    acquire_lock(tmp_path)
    release_lock(tmp_path)
    assert not (tmp_path / ".lock").exists()


# --- two runs at once ------------------------------------------------------------------------

OTHER_RUN = dict(source="digits", epochs=2, noise_mode="pairflip", noise_rate=0.3, seed=1)


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses (ip:port) of the TCP sockets that processes ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # the process ended meanwhile
            continue
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                ip_hex, port_hex = fields[1].split(":")
                packed = bytes.fromhex(ip_hex)
                if width == 8:
                    ip = socket.inet_ntop(socket.AF_INET, packed[::-1])
                else:
                    ip = socket.inet_ntop(socket.AF_INET6, b"".join(packed[i:i + 4][::-1] for i in range(0, 16, 4)))
                addresses.add(f"{ip}:{int(port_hex, 16)}")
    return addresses


def process_tree(root: int) -> set[int]:
    """PIDs of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:  # ended meanwhile
            continue
        if stat:
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, pending = set(), [root]
    while pending:
        pid = pending.pop()
        tree.add(pid)
        pending += children.get(pid, [])
    return tree


@pytest.fixture(scope="module")
def other_reference(prefect_server, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("other-reference") / "run"
    mixnn(run_dir=str(run_dir), **OTHER_RUN)
    return run_dir


@pytest.mark.slow
def test_two_runs_at_once_do_not_interfere(digits_run, other_reference, tmp_path):
    runs = {"first": (DIGITS_RUN, digits_run[0]), "second": (OTHER_RUN, other_reference)}
    # each with its own Prefect home: two embedded servers on one SQLite file could lock it
    processes = {name: start_cli(cli_args("digits", tmp_path / name, run), tmp_path / f"home-{name}",
                                 tmp_path / f"{name}.log")
                 for name, (run, _) in runs.items()}
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "first" / "labels.parquet").exists():
            assert processes["first"].poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # while it runs: its directory is refused, and its embedded server listens on 127.0.0.1 only
        with pytest.raises(RunDirectoryInUse, match=f"in use by process {processes['first'].pid}"):
            mixnn(run_dir=str(tmp_path / "first"), **DIGITS_RUN)
        addresses = listening_addresses(process_tree(processes["first"].pid))
        assert addresses and all(address.startswith("127.0.0.1:") for address in addresses), addresses
        for name, process in processes.items():
            assert process.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for name, (_, reference_dir) in runs.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name / "manifest.parquet"),
                                      pd.read_parquet(reference_dir / "manifest.parquet"))
