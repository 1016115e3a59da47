"""The per-epoch evaluation table: its columns, its writer options, and a folder of shard parts."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from mixnn_core.evaluation_table import evaluation_table, read_evaluation_table, write_evaluation_table
from mixnn_core.files import read_vector_column
from mixnn_core.trainer import EvalPass


def random_evaluation(rng: np.random.Generator, n: int) -> EvalPass:
    probs = rng.dirichlet(np.ones(4), n).astype(np.float32)
    return EvalPass(features=np.maximum(rng.standard_normal((n, 6)), 0).astype(np.float32),
                    losses=rng.random(n), probs=probs)


def test_a_folder_of_parts_reads_as_one_table_in_sample_order_without_dictionary_pages(tmp_path):
    rng = np.random.default_rng(0)
    first, second = random_evaluation(rng, 7), random_evaluation(rng, 5)
    folder = tmp_path / "epoch=001.parquet"
    write_evaluation_table(evaluation_table(np.arange(7, 12), second), folder / "shard-000001.parquet")
    write_evaluation_table(evaluation_table(np.arange(7), first), folder / "shard-000000.parquet")

    table = read_evaluation_table(folder, ["sample_id", "feature", "loss", "prediction", "probs"])
    assert table["sample_id"].to_pylist() == list(range(12))
    np.testing.assert_array_equal(read_vector_column(table, "feature"), np.vstack([first.features, second.features]))
    np.testing.assert_array_equal(read_vector_column(table, "probs"), np.vstack([first.probs, second.probs]))
    np.testing.assert_array_equal(table["loss"].to_numpy(), np.concatenate([first.losses, second.losses]))
    np.testing.assert_array_equal(table["prediction"].to_numpy(),
                                  np.concatenate([first.probs.argmax(1), second.probs.argmax(1)]))
    assert read_evaluation_table(folder, ["loss"]).column_names == ["loss"]
    for part in folder.iterdir():
        metadata = pq.ParquetFile(part).metadata
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(0).column(column)
            assert chunk.dictionary_page_offset is None, chunk.path_in_schema
            assert chunk.compression == "SNAPPY", chunk.path_in_schema


def test_a_part_out_of_sample_order_is_refused_naming_the_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "epoch=002.parquet"
    write_evaluation_table(evaluation_table(np.arange(5, 8), random_evaluation(rng, 3)), folder / "a.parquet")
    write_evaluation_table(evaluation_table(np.arange(5), random_evaluation(rng, 5)), folder / "b.parquet")
    with pytest.raises(ValueError, match=r"epoch=002.parquet: rows are not in sample order \(row 3 has sample_id 0 after 7\)"):
        read_evaluation_table(folder, ["feature"])


def test_publishing_renames_the_parts_folder_only_when_it_holds_exactly_the_epochs_parts(tmp_path):
    from tasks.features import publish_features
    from tasks.run_files import RunFiles

    run = RunFiles(tmp_path)
    rng = np.random.default_rng(2)
    parts = [write_evaluation_table(evaluation_table(np.arange(start, start + 4), random_evaluation(rng, 4)),
                                    run.feature_part(3, f"shard-{i:06d}.tar"))
             for i, start in enumerate((0, 4))]
    stray = run.feature_parts(3) / "shard-000009.parquet"
    stray.write_bytes(b"left by another run")
    with pytest.raises(RuntimeError, match=r"epoch=003\.parts holds .*shard-000009\.parquet.*not the parts"):
        publish_features.fn(str(tmp_path), 3, [str(part) for part in parts])
    assert not run.features(3).exists()

    stray.unlink()
    published = publish_features.fn(str(tmp_path), 3, [str(part) for part in parts])
    assert published == str(run.features(3)) and not run.feature_parts(3).exists()
    assert read_evaluation_table(published, ["sample_id"])["sample_id"].to_pylist() == list(range(8))
