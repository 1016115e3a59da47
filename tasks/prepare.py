"""Stage 0: the run directory, its lock, and the recorded configuration of the run."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from prefect import task

from mixnn_core.files import write_json_atomic
from tasks.run_files import RunFiles

# Below this much free space a run would fail hours later writing checkpoints: fail now.
MIN_FREE_BYTES = 200 * 1024 * 1024
# Settings a run may be resumed with changed: they do not change its result.
RESUMABLE_CHANGES = {"device"}


class RunDirectoryInUse(RuntimeError):
    """Another live process holds the run directory's lock."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(root: Path) -> Path:
    """Create ``root/.lock`` for this process; a lock of a dead process is taken over."""
    lock = root / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            pid = int(holder.get("pid", -1))
            same_host = holder.get("host") == me["host"]
            if pid == me["pid"] and same_host:
                return lock
            if same_host and pid > 0 and _process_alive(pid):
                raise RunDirectoryInUse(f"run directory {root} is in use by process {pid} "
                                        f"(lock {lock}); wait for it or choose another --run-dir")
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return lock


def release_lock(root: str | Path) -> None:
    lock = Path(root) / ".lock"
    try:
        holder = json.loads(lock.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if holder.get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


@task(name="prepare-run")
def prepare_run(run_dir: str, configuration: dict) -> str:
    """Create and lock the run directory and record (or check) the run's configuration.

    A directory that already holds a run with a different configuration is refused: resuming
    it with other settings would not reproduce either run.
    """
    root = Path(run_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):
        raise PermissionError(f"run directory {root} is not writable")
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"only {free // 2**20} MiB free in {root}; need at least "
                      f"{MIN_FREE_BYTES // 2**20} MiB")
    acquire_lock(root)
    run = RunFiles(root)
    if run.config.exists():
        recorded = json.loads(run.config.read_text())
        changed = sorted(k for k in set(recorded) | set(configuration)
                         if k not in RESUMABLE_CHANGES and recorded.get(k) != configuration.get(k))
        if changed:
            raise ValueError(f"run directory {root} holds a run with a different configuration "
                             f"({', '.join(changed)} differ); use a new --run-dir")
    write_json_atomic(configuration, run.config)
    return str(root)
