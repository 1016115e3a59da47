"""Which task failures are worth retrying: transient I/O errors, not bad input."""

from __future__ import annotations

# I/O errors that a retry cannot fix: the input itself is wrong.
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
IO_RETRIES = dict(retries=2, retry_delay_seconds=2)


def transient_io_error(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry an ``OSError`` unless it names bad input."""
    try:
        state.result()
    except PERMANENT_OS_ERRORS:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False
