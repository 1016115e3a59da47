"""The clean-dataset deployment against a real Prefect server on 127.0.0.1.

Starts `prefect server start`, creates the process work pool, deploys from prefect.yaml,
starts a worker, runs `prefect deployment run mixnn/clean-dataset` on digits, waits for
Completed and checks the manifest. Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

PROJECT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children, by PID."""
    if process.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def test_clean_dataset_deployment_completes_against_a_local_server(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
    started: list[subprocess.Popen] = []

    def background(args, log_name):
        log = tmp_path / log_name
        process = subprocess.Popen(args, cwd=PROJECT, env=env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process, log

    def run(args, timeout=300):
        return subprocess.run(args, cwd=PROJECT, env=env, capture_output=True, text=True,
                              timeout=timeout)

    try:
        server, server_log = background([PREFECT, "server", "start", "--host", "127.0.0.1",
                                         "--port", str(port)], "server.log")
        wait_healthy(api, server, server_log)
        pool = run([PREFECT, "work-pool", "create", "mixnn-process", "--type", "process"])
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deploy = run([PREFECT, "--no-prompt", "deploy", "--all"])
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        assert "mixnn/clean-dataset" in deploy.stdout
        assert "mixnn-relabel/relabel-incoming" in deploy.stdout
        inspect = run([PREFECT, "deployment", "inspect", "mixnn-relabel/relabel-incoming"])
        assert inspect.returncode == 0 and "0 * * * *" in inspect.stdout, inspect.stdout
        worker, worker_log = background([PREFECT, "worker", "start", "--pool", "mixnn-process"],
                                        "worker.log")
        run_dir = tmp_path / "run"
        result = run([PREFECT, "deployment", "run", "mixnn/clean-dataset",
                      "--param", "source=digits", "--param", f"run_dir={run_dir}",
                      "--param", "epochs=4", "--param", "noise_mode=symmetric",
                      "--param", "noise_rate=0.4", "--watch", "--watch-timeout", "600"],
                     timeout=700)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output + "\nworker:\n" + worker_log.read_text()[-4000:]
        assert "Completed" in output

        manifest = pd.read_parquet(run_dir / "manifest.parquet")
        assert len(manifest) == 1797
        assert manifest["sample_id"].tolist() == list(range(1797))
        assert {"suggested_label", "label_quality", "is_label_issue", "true_label"} <= set(manifest)
        # four epochs already move the suggestions well past the 64 % right given labels
        assert (manifest["suggested_label"] == manifest["true_label"]).mean() > 0.75
        assert (run_dir / "model" / "model.torchscript.pt").exists()
        assert (run_dir / "report" / "report.md").exists()

        batch = tmp_path / "incoming"
        for i, image in enumerate(load_digits().images[:12]):
            (batch / str(load_digits().target[i])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(
                batch / str(load_digits().target[i]) / f"{i}.png")
        result = run([PREFECT, "deployment", "run", "mixnn-relabel/relabel-incoming",
                      "--param", f"incoming={batch}", "--param", f"model_run_dir={run_dir}",
                      "--watch", "--watch-timeout", "300"], timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr
        scored = pd.read_parquet(run_dir / "incoming" / "manifest" / "part-v0001.parquet")
        assert len(scored) == 12
    finally:
        for process in reversed(started):
            stop(process)
    assert all(process.poll() is not None for process in started)
