"""Where does HNSW become faster than exact all-vs-all neighbour search on this machine?

Times ``mixnn_core.knn`` end to end (build the index, then find every sample's k nearest
neighbours, itself excluded) for exact and HNSW search on clustered synthetic features, and
reports HNSW's recall against the exact neighbours. The crossover sets
``mixnn_core.knn.AUTO_EXACT_MAX_WORK``.

The features imitate penultimate-layer embeddings: gaussian clusters (one per class) whose
spread lies mostly in a low-dimensional subspace, plus a little isotropic noise.

    python bench/knn_auto_threshold.py                      # full grid (several minutes)
    python bench/knn_auto_threshold.py --sizes 5000 20000 --dims 128 --ks 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixnn_core import knn  # noqa: E402


def clustered_features(n_samples: int, dim: int, n_clusters: int, intrinsic_dim: int,
                       seed: int) -> np.ndarray:
    """(n_samples, dim) float32 points around ``n_clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    basis = rng.normal(size=(intrinsic_dim, dim)) / np.sqrt(intrinsic_dim)
    cluster = rng.integers(0, n_clusters, size=n_samples)
    spread = rng.normal(size=(n_samples, intrinsic_dim)) @ basis
    noise = 0.1 * rng.normal(size=(n_samples, dim))
    return (centres[cluster] + 0.5 * spread + noise).astype(np.float32)


def timed_neighbors(features: np.ndarray, k: int, method: str) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    neighbors = knn.nearest_neighbors(features, k, method)
    return neighbors, time.perf_counter() - start


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the true k nearest neighbours that ``found`` contains (order ignored)."""
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / truth.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 60000, 120000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--intrinsic-dim", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=knn.HNSW_EF_CONSTRUCTION)
    parser.add_argument("--ef-search", type=int, default=knn.HNSW_EF_SEARCH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    knn.HNSW_EF_CONSTRUCTION = args.ef_construction
    knn.HNSW_EF_SEARCH = args.ef_search

    print(f"faiss threads {knn.faiss_thread_count()}, HNSW M={knn.HNSW_M} "
          f"efConstruction={args.ef_construction} efSearch={args.ef_search}, "
          f"{args.clusters} clusters, intrinsic dim {args.intrinsic_dim}")
    print(f"{'N':>7} {'D':>4} {'k':>2} {'exact s':>8} {'hnsw s':>8} {'hnsw/exact':>10} "
          f"{'recall':>6}")
    for dim in args.dims:
        for n_samples in args.sizes:
            features = clustered_features(n_samples, dim, args.clusters, args.intrinsic_dim,
                                          args.seed)
            for k in args.ks:
                exact, exact_s = timed_neighbors(features, k, "exact")
                approx, hnsw_s = timed_neighbors(features, k, "hnsw")
                print(f"{n_samples:>7} {dim:>4} {k:>2} {exact_s:>8.2f} {hnsw_s:>8.2f} "
                      f"{hnsw_s / exact_s:>10.2f} {recall(approx, exact):>6.3f}", flush=True)


if __name__ == "__main__":
    main()
