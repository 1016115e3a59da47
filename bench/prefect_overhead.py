"""Prefect's orchestration overhead on a real run: flow wall time outside every task body.

    .venv/bin/python bench/prefect_overhead.py --n 20000 --epochs 5
    .venv/bin/python bench/prefect_overhead.py --n 0 --epochs 6      # digits, a quick check

Runs the ``mixnn`` flow (embedded Prefect: a temporary home and server, as a laptop user runs
it) on a Fashion-MNIST subset of ``--n`` images saved as .npz (``--n 0``: scikit-learn's digits),
then reads every task run of that flow run and of its subflows from Prefect's API and takes the
union of their [start, end] intervals: the wall time during which some task body was running.
The rest of the flow's wall time is orchestration: flow and task state changes, parameter and
result handling, subflow starts, and the flow's own lines between tasks. Also records the
flow process's peak resident memory (every task runs in it: ingestion, training, export;
Prefect's embedded server is a separate process). Writes
``bench/results/prefect_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timestamps import utc_now  # noqa: E402


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals (overlaps counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def task_intervals() -> list[tuple[float, float]]:
    """[start, end] (epoch seconds) of every finished task run in this Prefect home, leaving out
    the placeholder task runs Prefect makes for subflow calls (their span is the subflow's)."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        placeholders = {run.parent_task_run_id for run in client.read_flow_runs()}
        task_runs = client.read_task_runs()
    return [(run.start_time.timestamp(), run.end_time.timestamp()) for run in task_runs
            if run.id not in placeholders and run.start_time and run.end_time]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="Fashion-MNIST images (0: digits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prefect_overhead.json")
    args = parser.parse_args(argv)
    if args.n < 0 or args.epochs < 1:
        parser.error(f"--n must be >= 0 and --epochs >= 1, got --n {args.n} --epochs {args.epochs}")
    # Embedded mode in a fresh home, so every task run Prefect knows of is this run's.
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="mixnn-overhead-prefect-")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    import numpy as np
    from prefect import flow

    from bench.datasets import fashion_mnist, subset
    from flows.mixnn_flow import mixnn

    @flow(name="overhead-probe")
    def probe(source: str, run_dir: str) -> dict:
        started = time.time()
        result = mixnn(source=source, run_dir=run_dir, epochs=args.epochs, noise_mode="symmetric",
                       noise_rate=0.5, seed=0)
        return {"started": started, "finished": time.time(), "result": result}

    with tempfile.TemporaryDirectory() as scratch:
        source = "digits"
        if args.n:
            train = subset(fashion_mnist()[0], args.n)
            source = str(Path(scratch) / f"fmnist-{args.n}.npz")
            np.savez(source, images=train.images[:, 0], labels=train.labels)
        outcome = probe(source, str(Path(scratch) / "run"))
    wall = outcome["finished"] - outcome["started"]
    inside = covered_seconds([(max(start, outcome["started"]), min(end, outcome["finished"]))
                              for start, end in task_intervals()
                              if end > outcome["started"] and start < outcome["finished"]])
    row = {"n": outcome["result"]["counts"]["n_ingested"], "epochs": args.epochs, "flow_wall_seconds": wall,
           "inside_tasks_seconds": inside, "orchestration_seconds": wall - inside,
           "orchestration_share": (wall - inside) / wall,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "load_average_after": os.getloadavg(),
           "finished_at": utc_now()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    print(json.dumps(row, indent=2))
    return row


if __name__ == "__main__":
    main()
