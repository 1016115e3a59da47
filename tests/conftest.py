"""Test-session settings: Prefect offline in a temporary home, and one local test server."""

import os
import tempfile

# Before prefect is imported anywhere: an isolated home and no telemetry.
_home = tempfile.mkdtemp(prefix="mixnn-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _home)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server for in-process flow runs (started once, about 10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
