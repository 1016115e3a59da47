"""Where do HNSW and IVF become faster than exact all-vs-all neighbour search on this machine?

Times ``mixnn_core.knn`` end to end (build the index, then find every sample's k nearest
neighbours, itself excluded) for exact, HNSW and IVF search on clustered synthetic features (or
saved real ones), and reports the approximate methods' recall against the exact neighbours.
The crossover sets ``mixnn_core.knn.AUTO_EXACT_MAX_WORK``.

The features imitate penultimate-layer embeddings: gaussian clusters (one per class) whose
spread lies mostly in a low-dimensional subspace, plus a little isotropic noise.

    python bench/knn_auto_threshold.py                      # full grid (several minutes)
    python bench/knn_auto_threshold.py --sizes 5000 20000 --dims 128 --ks 1
    python bench/knn_auto_threshold.py --features features.npy   # real (N, D) features
    python bench/knn_auto_threshold.py --fashion-mnist 60000 --methods ivf --ivf-probes 4 8

``--fashion-mnist N`` measures real features: the cpu preset's small CNN after its 4 warm-up
epochs (a 20-epoch run's) on N Fashion-MNIST training images with 50 % symmetric noise (seed 0,
one thread). ``--ivf-probes``, ``--ivf-training-points-per-cell`` and ``--ivf-cells-per-root-n`` measure
IVF settings other than ``mixnn_core.knn``'s, each against the same exact neighbours.
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


def variant_name(method: str, probes: int | None, points_per_cell: int | None, cells: float | None) -> str:
    return f"ivf c{cells:g} p{probes} t{points_per_cell}" if method == "ivf" else method


def fashion_mnist_features(n_samples: int) -> np.ndarray:
    """The (n_samples, 128) features a 20-epoch cpu-preset run has when its first mixing epoch
    starts, on Fashion-MNIST with 50 % symmetric noise."""
    import torch

    from bench.datasets import fashion_mnist
    from mixnn_core.config import cpu_preset
    from mixnn_core.noise import inject_noise
    from mixnn_core.trainer import Trainer

    torch.set_num_threads(1)
    train, _ = fashion_mnist()
    chosen = np.sort(np.random.default_rng(0).choice(len(train.labels), n_samples, replace=False))
    noisy, _ = inject_noise(train.labels[chosen], 10, "symmetric", 0.5, 0)
    trainer = Trainer(cpu_preset(20, "mixnn"), train.images[chosen], noisy, 10)
    while trainer.epoch < trainer.config.warmup_epochs:
        trainer.train_epoch()
    return trainer.evaluation_pass().features


def feature_sets(args) -> list[tuple[str, np.ndarray]]:
    """(name, features) to measure: saved real features, or clustered synthetic ones."""
    if args.fashion_mnist:
        return [(f"fashion-mnist {n} (sym 50)", fashion_mnist_features(n)) for n in args.fashion_mnist]
    if args.features:
        return [(Path(path).name, np.load(path, allow_pickle=False).astype(np.float32)) for path in args.features]
    return [(f"clustered {n}x{dim}", clustered_features(n, dim, args.clusters, args.intrinsic_dim, args.seed))
            for dim in args.dims for n in args.sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 60000, 120000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--intrinsic-dim", type=int, default=16)
    parser.add_argument("--features", nargs="*", default=[], metavar="FILE.npy",
                        help="measure these saved (N, D) features instead of synthetic ones")
    parser.add_argument("--fashion-mnist", type=int, nargs="*", default=[], metavar="N",
                        help="measure real features of N Fashion-MNIST images (see above)")
    parser.add_argument("--methods", nargs="+", default=["hnsw", "ivf"], choices=["hnsw", "ivf"])
    parser.add_argument("--ivf-probes", type=int, nargs="+", default=[knn.IVF_PROBES])
    parser.add_argument("--ivf-training-points-per-cell", type=int, nargs="+",
                        default=[knn.IVF_TRAINING_POINTS_PER_CELL])
    parser.add_argument("--ivf-cells-per-root-n", type=float, nargs="+", default=[knn.IVF_CELLS_PER_ROOT_N])
    parser.add_argument("--ef-construction", type=int, default=knn.HNSW_EF_CONSTRUCTION)
    parser.add_argument("--ef-search", type=int, default=knn.HNSW_EF_SEARCH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    knn.HNSW_EF_CONSTRUCTION = args.ef_construction
    knn.HNSW_EF_SEARCH = args.ef_search

    print(f"faiss threads {knn.faiss_thread_count()}, HNSW M={knn.HNSW_M} "
          f"efConstruction={args.ef_construction} efSearch={args.ef_search}, "
          f"IVF cells per sqrt(N) {args.ivf_cells_per_root_n}, probes {args.ivf_probes}, "
          f"k-means points per cell {args.ivf_training_points_per_cell}")
    variants = [(method, None, None, None) for method in args.methods if method != "ivf"]
    if "ivf" in args.methods:
        variants += [("ivf", probes, points, cells) for cells in args.ivf_cells_per_root_n
                     for probes in args.ivf_probes for points in args.ivf_training_points_per_cell]
    print(f"{'features':>32} {'k':>2} {'exact s':>8} " + " ".join(
        f"{variant_name(*variant) + ' s':>18} {'/exact':>6} {'recall':>6}" for variant in variants))
    for name, features in feature_sets(args):
        for k in args.ks:
            exact, exact_s = timed_neighbors(features, k, "exact")
            row = f"{name:>32} {k:>2} {exact_s:>8.2f}"
            for method, probes, points, cells in variants:
                if method == "ivf":
                    knn.IVF_PROBES, knn.IVF_TRAINING_POINTS_PER_CELL, knn.IVF_CELLS_PER_ROOT_N = probes, points, cells
                approx, seconds = timed_neighbors(features, k, method)
                row += f" {seconds:>18.2f} {seconds / exact_s:>6.2f} {recall(approx, exact):>6.3f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
