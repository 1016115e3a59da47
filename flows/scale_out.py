"""Where the fan-out stages (per-shard ingestion and feature extraction) run.

By default in the flow's own process, one shard after another. With ``dask=True`` on a Dask
cluster through prefect-dask's ``DaskTaskRunner``: an existing cluster given its scheduler
``address``, else a local cluster of ``workers`` processes started for the run (bound to
127.0.0.1) and closed after it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.task_runners import ThreadPoolTaskRunner


@contextlib.contextmanager
def fan_out_runner(dask: bool, address: str | None = None, workers: int = 2) -> Iterator:
    """A task runner factory for the fan-out subflows, valid inside the ``with`` block."""
    if not dask:
        yield lambda: ThreadPoolTaskRunner(max_workers=1)
        return
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    if address is not None:
        yield lambda: DaskTaskRunner(address=address)
        return
    environment = dict(os.environ)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster:
        # Starting the workers sets OMP_NUM_THREADS=1 (and the like) in THIS process too, which
        # changes the thread count of scikit-learn's k-means in the mixture fit, and with it
        # the last bits of the clean probabilities: the run would not reproduce a local one.
        restore_environment(environment)
        yield lambda: DaskTaskRunner(address=cluster.scheduler_address)


def restore_environment(saved: dict[str, str]) -> None:
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)
