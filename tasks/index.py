"""Stage 3b, every mixing epoch: the faiss neighbour index over the epoch's features."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pyarrow.parquet as pq
from prefect import task

from mixnn_core.files import read_vector_column, replace_atomically
from mixnn_core.knn import build_index, query_neighbors
from tasks.run_files import RunFiles


@task(name="build-index")
def build_neighbor_index(run_dir: str, epoch: int) -> str:
    """Build the index of ``epoch``'s features, save it, and save each sample's neighbours."""
    run = RunFiles(run_dir)
    path = run.neighbors(epoch)
    if path.exists():
        return str(path)
    train = json.loads(run.config.read_text())["train"]
    features = read_vector_column(pq.read_table(run.features(epoch), columns=["feature"]), "feature")
    normalize = train["normalize_features"]
    index = build_index(features, train["knn_method"], normalize=normalize)
    replace_atomically(run.index(epoch), lambda tmp: faiss.write_index(index, str(tmp)))
    neighbors = query_neighbors(index, features, train["num_neighbors"], normalize=normalize)
    replace_atomically(path, lambda tmp: _save_array(tmp, neighbors))
    return str(path)


def _save_array(path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object, so np.save adds no ".npy" to the name
        np.save(handle, array)
