"""The pipeline fanned out over Dask equals the single-process run, bit for bit."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from distributed import Client, LocalCluster

from flows.mixnn_flow import mixnn
from flows.scale_out import restore_environment
from tests.conftest import DIGITS_RUN

pytestmark = pytest.mark.slow


def assert_same_run(run_dir, reference_dir):
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "manifest.parquet"),
                                  pd.read_parquet(reference_dir / "manifest.parquet"))
    for features in sorted((reference_dir / "features").glob("epoch=*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "features" / features.name),
                                      pd.read_parquet(features))


def test_local_two_process_cluster_gives_the_single_process_result(digits_run, tmp_path):
    reference_dir, _ = digits_run
    mixnn(run_dir=str(tmp_path / "dask"), dask=True, dask_workers=2, **DIGITS_RUN)
    assert_same_run(tmp_path / "dask", reference_dir)


def test_existing_cluster_by_address(digits_run, tmp_path):
    reference_dir, _ = digits_run
    environment = dict(os.environ)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        restore_environment(environment)  # as a cluster started elsewhere would leave it
        mixnn(run_dir=str(tmp_path / "dask"), dask=True, dask_address=cluster.scheduler_address,
              **DIGITS_RUN)
        with Client(cluster) as client:
            prefixes = client.run_on_scheduler(lambda dask_scheduler: {
                name: sum(prefix.state_counts.values())
                for name, prefix in dask_scheduler.task_prefixes.items()})
    print(prefixes)
    # one evaluation task per shard (digits: one shard) for each of the 5 mixing epochs
    assert sum(prefixes.values()) >= 5
    assert_same_run(tmp_path / "dask", reference_dir)
