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


# The pipeline's standard test run: digits with 40 % symmetric noise, 6 epochs (1 warm-up).
# lr 0.05: 6 epochs of digits are only 84 SGD steps, too few for the default lr (0.02, chosen
# for 20+ epoch budgets on larger data) to reach the accuracy bounds the pipeline tests check.
DIGITS_RUN = dict(source="digits", epochs=6, noise_mode="symmetric", noise_rate=0.4, seed=0,
                  train_options={"lr": 0.05})


@pytest.fixture(scope="session")
def digits_run(prefect_server, tmp_path_factory):
    """One finished mixnn run on digits, shared by the tests that read its outputs."""
    from flows.mixnn_flow import mixnn

    run_dir = tmp_path_factory.mktemp("run") / "digits"
    result = mixnn(run_dir=str(run_dir), **DIGITS_RUN)
    return run_dir, result
