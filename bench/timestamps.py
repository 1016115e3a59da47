"""The UTC timestamps benchmark result files carry (``finished_at``), written and read back."""

from __future__ import annotations

import time
from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Now, in UTC, to the second: "2026-12-04T07:20:00Z"."""
    return time.strftime(FORMAT, time.gmtime())


def seconds_since_epoch(stamp: str) -> float:
    """The POSIX time of a ``utc_now()`` stamp."""
    return datetime.strptime(stamp, FORMAT).replace(tzinfo=timezone.utc).timestamp()
