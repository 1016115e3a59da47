"""Stage 0: the run directory, its lock, and the recorded configuration of the run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from pathlib import Path

from prefect import get_run_logger, task

from mixnn_core.files import read_json, remove_temporaries, write_json_atomic
from tasks.run_files import RunFiles

LOCK_FILE = ".lock"
# Below this much free space a run would fail hours later writing checkpoints: fail now.
# ``MIXNN_MIN_FREE_BYTES`` overrides it (read at every check).
MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_BYTES_VARIABLE = "MIXNN_MIN_FREE_BYTES"
# Settings a run may be resumed with changed: they do not change its result.
RESUMABLE_CHANGES = {"device"}

# Run directory (resolved) -> open descriptor of its lock file, for the locks this process holds.
_HELD_LOCKS: dict[Path, int] = {}


class RunDirectoryInUse(RuntimeError):
    """Another run holds the run directory's lock."""


def acquire_lock(root: Path) -> Path:
    """Hold an exclusive ``flock`` on ``root/.lock`` until :func:`release_lock`.

    The kernel drops the lock when its process ends, also on ``kill -9``, so a lock file left
    by a dead process never blocks; the file only tells a refused run who holds the lock.
    Raises ``RunDirectoryInUse`` when another run (another process, or another run of this
    process) holds it.
    """
    root = Path(root).resolve()
    lock = root / LOCK_FILE
    if root in _HELD_LOCKS:
        raise RunDirectoryInUse(f"run directory {root} is in use by another run of this process "
                                f"(pid {os.getpid()})")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise RunDirectoryInUse(f"run directory {root} is in use by {holder} (lock {lock}); "
                                    f"wait for that run to end or choose another --run-dir") from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # its holder removed the file between our open and our lock: start again
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
    _HELD_LOCKS[root] = fd
    return lock


def describe_holder(content: bytes) -> str:
    """Who holds a lock, from its file's content (``{"pid": ..., "host": ...}``)."""
    try:
        holder = json.loads(content)
        return f"process {int(holder['pid'])} on {holder['host']}"
    except (ValueError, TypeError, KeyError):  # still being written
        return "another process"


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def release_lock(root: str | Path) -> None:
    """Remove the lock file and drop the lock, if this process holds the lock of ``root``."""
    root = Path(root).resolve()
    fd = _HELD_LOCKS.pop(root, None)
    if fd is None:
        return
    (root / LOCK_FILE).unlink(missing_ok=True)
    os.close(fd)  # closing the last descriptor drops the flock


def min_free_bytes() -> int:
    """The free space a run needs in its directory: ``$MIXNN_MIN_FREE_BYTES`` or ``MIN_FREE_BYTES``."""
    value = os.environ.get(MIN_FREE_BYTES_VARIABLE, "").strip()
    if not value:
        return MIN_FREE_BYTES
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{MIN_FREE_BYTES_VARIABLE}={value!r} is not a whole number of bytes") from None


def check_writable(root: Path) -> None:
    """Create ``root`` if needed; refuse it unless it is a writable folder with enough free space."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create run directory {root}: {error.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(f"run directory {root} is not writable")
    free, needed = shutil.disk_usage(root).free, min_free_bytes()
    if free < needed:
        raise OSError(f"only {free // 2**20} MiB free in {root}; a run needs at least "
                      f"{needed // 2**20} MiB (set {MIN_FREE_BYTES_VARIABLE} to change this)")


def check_configuration(run: RunFiles, configuration: dict) -> None:
    """Refuse a directory holding a run of another configuration (only ``device`` may change)."""
    if not run.config.exists():
        return
    recorded = read_json(run.config)
    changed = sorted(k for k in set(recorded) | set(configuration)
                     if k not in RESUMABLE_CHANGES and recorded.get(k) != configuration.get(k))
    if changed:
        raise ValueError(f"run directory {run.root} holds a run with a different configuration "
                         f"({', '.join(changed)} differ); use a new --run-dir")


@task(name="prepare-run")
def prepare_run(run_dir: str, configuration: dict) -> str:
    """Create and lock the run directory and record (or check) the run's configuration.

    Everything that can be checked before the work starts is: the directory must be writable
    with enough free space, no other run may hold it, and a directory that already holds a run
    with a different configuration is refused (resuming it with other settings would reproduce
    neither run). Temporaries left by a killed run are removed. On failure the lock is released.
    """
    root = Path(run_dir).expanduser().resolve()
    check_writable(root)
    acquire_lock(root)
    try:
        run = RunFiles(root)
        check_configuration(run, configuration)
        removed = remove_temporaries(root)
        if removed:
            get_run_logger().info("removed %d temporaries left by an interrupted run in %s",
                                  len(removed), root)
        write_json_atomic(configuration, run.config)
    except BaseException:
        release_lock(root)
        raise
    return str(root)
