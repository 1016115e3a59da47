"""The per-epoch evaluation table: its columns, its writer options, and combining shard parts."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from mixnn_core.evaluation_table import combine_evaluation_tables, evaluation_table, write_evaluation_table
from mixnn_core.files import read_vector_column
from mixnn_core.trainer import EvalPass


def random_evaluation(rng: np.random.Generator, n: int) -> EvalPass:
    probs = rng.dirichlet(np.ones(4), n).astype(np.float32)
    return EvalPass(features=np.maximum(rng.standard_normal((n, 6)), 0).astype(np.float32),
                    losses=rng.random(n), probs=probs)


def test_parts_combine_into_one_table_in_the_order_given_without_dictionary_pages(tmp_path):
    rng = np.random.default_rng(0)
    first, second = random_evaluation(rng, 7), random_evaluation(rng, 5)
    parts = [write_evaluation_table(evaluation_table(np.arange(7), first), tmp_path / "a.parquet"),
             write_evaluation_table(evaluation_table(np.arange(7, 12), second), tmp_path / "b.parquet")]
    combined = combine_evaluation_tables(parts, tmp_path / "epoch.parquet")

    table = pq.read_table(combined)
    assert table.column_names == ["sample_id", "feature", "loss", "prediction", "probs"]
    assert table["sample_id"].to_pylist() == list(range(12))
    np.testing.assert_array_equal(read_vector_column(table, "feature"), np.vstack([first.features, second.features]))
    np.testing.assert_array_equal(read_vector_column(table, "probs"), np.vstack([first.probs, second.probs]))
    np.testing.assert_array_equal(table["loss"].to_numpy(), np.concatenate([first.losses, second.losses]))
    np.testing.assert_array_equal(table["prediction"].to_numpy(),
                                  np.concatenate([first.probs.argmax(1), second.probs.argmax(1)]))
    metadata = pq.ParquetFile(combined).metadata
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            assert chunk.dictionary_page_offset is None, chunk.path_in_schema
            assert chunk.compression == "SNAPPY", chunk.path_in_schema
