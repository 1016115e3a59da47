"""Stage 3b, every mixing epoch: the faiss neighbour index over the epoch's features.

With ``neighbor_scope="batch"`` there is no index over the whole set: the neighbours are found
within random groups of samples (``mixnn_core.trainer.epoch_neighbors``) and only they are saved.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from prefect import task

from mixnn_core.config import TrainConfig
from mixnn_core.evaluation_table import read_evaluation_table
from mixnn_core.files import read_json, read_vector_column, replace_atomically
from mixnn_core.knn import build_index, query_neighbors
from mixnn_core.trainer import epoch_neighbors
from tasks.run_files import RunFiles


def save_index(features: np.ndarray, path: Path, train: dict) -> faiss.Index:
    """Build the faiss index of ``features`` as the run's configuration says, and save it."""
    index = build_index(features, train["knn_method"], normalize=train["normalize_features"])
    replace_atomically(path, lambda tmp: faiss.write_index(index, str(tmp)))
    return index


@task(name="build-index")
def build_neighbor_index(run_dir: str, epoch: int) -> str:
    """Build the index of ``epoch``'s features, save it, and save each sample's neighbours
    (under ``neighbor_scope="batch"`` only the neighbours)."""
    run = RunFiles(run_dir)
    path = run.neighbors(epoch)
    if path.exists():
        return str(path)
    train = read_json(run.config)["train"]
    features = read_vector_column(read_evaluation_table(run.features(epoch), ["feature"]), "feature")
    config = TrainConfig.from_dict(train)
    if config.neighbor_scope == "batch":
        neighbors = epoch_neighbors(features, config, epoch)
    else:
        index = save_index(features, run.index(epoch), train)
        neighbors = query_neighbors(index, features, train["num_neighbors"],
                                    normalize=train["normalize_features"])
    replace_atomically(path, lambda tmp: _save_array(tmp, neighbors))
    return str(path)


def _save_array(path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object, so np.save adds no ".npy" to the name
        np.save(handle, array)
