"""Nearest neighbours of every training sample in feature space (step 3 of the method).

Representations of same-class images cluster even when their labels are wrong, so a sample's
nearest neighbours mostly share its true class. Each sample is mixed with its ``k`` nearest
neighbours over the whole training set, itself excluded.

Three kinds of faiss index are offered:

- ``"exact"``: brute force (``IndexFlatIP`` / ``IndexFlatL2``), the true neighbours;
- ``"hnsw"``: an approximate graph index (``IndexHNSWFlat``);
- ``"ivf"``: approximate inverted lists (``IndexIVFFlat``: k-means cells, a few probed);

and ``"auto"`` picks exact or IVF by the work of an exact search, N^2 * D (see
``AUTO_EXACT_MAX_WORK``).
With ``normalize=True`` (the default) features are L2-normalised and compared by inner product,
i.e. cosine similarity; with ``normalize=False`` by Euclidean (L2) distance.

A first measurement of the two, with HNSW built by 2 threads::

    python bench/knn_auto_threshold.py
    python bench/knn_auto_threshold.py --sizes 10000 20000 30000 40000

on 2 cores shared with other jobs (so +-50 % between runs), faiss-cpu 1.15.1, 2 threads,
HNSW M=32, efConstruction=40, efSearch=32, clustered features (100 clusters, intrinsic
dimension 16), all-vs-all; seconds of build + search for k = 1 / k = 8 (the time barely
depends on k); recall = HNSW's share of the exact neighbours (rows 10k-40k from the second
run)::

       N    D   exact s (k=1/8)   hnsw s (k=1/8)   hnsw/exact   recall
    5000  128     0.46 /  0.44      1.30 /  1.33    2.8 - 3.0    1.000
   10000  128     0.93 /  0.93      1.66 /  1.25    1.3 - 1.8    0.999
   20000  128     3.15 /  3.31      2.89 /  3.00    0.9          0.994
   30000  128     7.62 /  7.63      4.97 /  5.51    0.65 - 0.72  0.983
   40000  128    12.82 / 12.23      7.53 /  6.65    0.54 - 0.59  0.976
   60000  128    27.23 / 51.12     10.59 /  9.67    0.19 - 0.39  0.970
  120000  128   146.69 / 93.26     38.43 / 27.47    0.26 - 0.29  0.968
    5000  512     0.48 /  0.21      1.46 /  0.58    2.8 - 3.0    1.000
   10000  512     1.74 /  1.70      2.12 /  2.38    1.2 - 1.4    1.000
   20000  512     6.94 /  6.78      5.27 /  5.36    0.76 - 0.79  0.995
   30000  512    15.92 / 15.37      8.65 /  9.75    0.54 - 0.63  0.986
   40000  512    26.00 / 31.60     12.80 / 12.67    0.40 - 0.49  0.973
   60000  512    25.04 / 26.12     11.56 / 12.09    0.46         0.960
  120000  512   230.23 / 239.20    97.76 / 45.01    0.19 - 0.42  0.955

Runs must be reproducible from their seed, and a graph built by several threads is not (the
insertion order varies, and with it some neighbours), so HNSW graphs are built by ONE thread
(searches still use all). That doubles the build time and moves the break-even point. Measured
again on the same machine (less loaded; clustered features, exact = IndexFlatIP build + search,
HNSW = single-threaded build + 2-thread search, efSearch 32)::

       N    D   exact s   hnsw s (build + search)
   60000  128      7.9      9.9 + 4.2 = 14.1       (2-thread build: 4.8 + 4.1)
   60000  512     53.0     23.7 + 13.3 = 37.0      (load 3)
  120000  128     63.0     28.3 + 24.1 = 52.4      (load 3)

So exact search stayed faster than HNSW up to 60k x 128.

IVF, measured on REAL features (the small CNN's 128-d features of Fashion-MNIST 60k with 50 %
symmetric noise after 4 warm-up epochs, and their first 5k-40k rows), 1 thread, beside two
training jobs on the 2 cores (so absolute times are inflated; the ratios are the point)::

    python bench/knn_auto_threshold.py --features f5000.npy ... f60000.npy --ks 1 --methods ivf

       N   exact s   ivf s   ivf/exact   recall      (hnsw at 60k: 13.2 s, recall 0.998)
    5000      0.20    0.13      0.67      0.999
   10000      0.88    0.36      0.41      0.998
   20000      3.15    1.18      0.37      0.998
   40000     12.11    5.00      0.41      0.997
   60000     27.54    7.77      0.28      0.997

IVF's search scans cell by cell (no matrix multiply), so it wins by less than the 1/30 of the
distances it computes, but it wins from about 5k samples on, at a recall of 0.997 or more, and
its k-means cells are reproducible (seeded; the same neighbours with 1 or 2 threads). So
``auto`` keeps exact search while N^2 * D <= 1e10 (about 8.8k samples of 128-d features, 4.4k of
512-d; below that both take well under a second) and uses IVF above.
"""

from __future__ import annotations

import os

import faiss
import numpy as np

METHODS = ("auto", "exact", "hnsw", "ivf")

# HNSW graph degree (faiss' usual choice; higher = better recall, more memory and build time).
HNSW_M = 32
# Candidate-list sizes while building and while searching the graph. efConstruction is faiss'
# default; efSearch 32 instead of faiss' 16 lifts the recall of 20k x 512 clustered features
# from 0.97 to 0.99 at no measurable cost (64 / 64 gave 1.00 but took 1.5-2x as long). The
# search value is raised to k + 1 when k is larger.
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32

# Inverted lists: about 2 sqrt(N) k-means cells (10 seeded k-means iterations, so the same
# features give the same cells), and each query scans the IVF_PROBES cells nearest to it. On
# real features (Fashion-MNIST 60k, 128-d, after warm-up) 2 sqrt(N) cells and 8 probes kept a
# recall of 0.997 and were 3.3x faster than exact search; sqrt(N) cells were only 2x faster
# (bigger cells), 25 k-means iterations instead of 10 changed the recall by 0.0002.
IVF_PROBES = 8
IVF_KMEANS_ITERATIONS = 10
IVF_KMEANS_SEED = 0
# k-means learns the cells from at most this many samples per cell, a seeded random subset (faiss'
# default is 256: all samples up to N = 4 * 256^2). On real features (Fashion-MNIST 60k, 128-d,
# after the 4 warm-up epochs of a 20-epoch run at 50 % symmetric noise, 2 threads, alternating)
# 64 instead of 256 took build + all-vs-all query from 1.67-1.74 s to 1.49-1.51 s at the same
# recall, 0.994 (``bench/knn_auto_threshold.py --fashion-mnist 60000``, BENCHMARKS "Thirty-fourth
# pass"); fewer probes cost recall (6: 0.992, 4: 0.987).
IVF_TRAINING_POINTS_PER_CELL = 64
# the "2" of 2 sqrt(N) cells; 3 and 4 (8 probes, same features) took 1.43 / 1.65 s against 1.47 s
# at recall 0.993 against 0.994
IVF_CELLS_PER_ROOT_N = 2


def ivf_list_count(n_samples: int) -> int:
    """Number of k-means cells of an IVF index over ``n_samples`` vectors: about 2 sqrt(N)
    (``IVF_CELLS_PER_ROOT_N``)."""
    return max(1, round(IVF_CELLS_PER_ROOT_N * n_samples ** 0.5))


# ``method="auto"`` uses exact search while N^2 * D is at most this, IVF above (measurements in
# the module docstring).
AUTO_EXACT_MAX_WORK = 1e10


def faiss_thread_count() -> int:
    """Threads faiss should use: ``OMP_NUM_THREADS`` when set, else the CPUs we may run on.

    The variable is read at call time, so a pipeline that sets it after faiss was imported is
    still obeyed.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _as_features(features: np.ndarray, normalize: bool) -> np.ndarray:
    """Contiguous float32 (N, D) copy of ``features``, L2-normalised rows when ``normalize``.

    An all-zero row stays zero (cosine similarity 0 to every other sample).
    """
    x = np.array(features, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (N, D), got shape {x.shape}")
    finite = np.isfinite(x)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"features contain NaN or inf in {bad_rows.size} rows (first at sample {bad_rows[0]})"
        )
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
    return x


def _check_k(k: int, n_samples: int, bound: str | None = None) -> None:
    """Refuse a ``k`` that is not an integer in [1, n_samples); ``bound`` says what
    ``n_samples`` counts (default: N, all samples)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n_samples:
        bound = bound or f"N (N = {n_samples} samples)"
        raise ValueError(f"k must be an integer with 1 <= k < {bound}, got k = {k!r}")


def _resolve_method(method: str, n_samples: int, dim: int) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown neighbour search method {method!r}; valid: {', '.join(METHODS)}")
    if method == "auto":
        return "exact" if float(n_samples) ** 2 * dim <= AUTO_EXACT_MAX_WORK else "ivf"
    return method


def build_index(features: np.ndarray, method: str = "exact", *,
                normalize: bool = True) -> faiss.Index:
    """A faiss index holding all ``features`` (N, D), ready for ``query_neighbors``.

    ``method`` is ``"exact"``, ``"hnsw"``, ``"ivf"`` or ``"auto"`` (by N^2 * D, see
    ``AUTO_EXACT_MAX_WORK``).
    ``normalize=True`` stores L2-normalised features under the inner-product metric (cosine
    similarity); ``normalize=False`` stores them as given under the L2 metric. HNSW graphs are
    built by one thread, so the same features always give the same graph. The index can be
    saved with ``faiss.write_index``.
    """
    x = _as_features(features, normalize)
    n_samples, dim = x.shape
    metric = faiss.METRIC_INNER_PRODUCT if normalize else faiss.METRIC_L2
    method = _resolve_method(method, n_samples, dim)
    if method == "exact":
        index = faiss.IndexFlatIP(dim) if normalize else faiss.IndexFlatL2(dim)
        faiss.omp_set_num_threads(faiss_thread_count())
    elif method == "ivf":
        index = faiss.index_factory(dim, f"IVF{ivf_list_count(n_samples)},Flat", metric)
        index.cp.seed, index.cp.niter = IVF_KMEANS_SEED, IVF_KMEANS_ITERATIONS
        index.cp.max_points_per_centroid = IVF_TRAINING_POINTS_PER_CELL
        faiss.omp_set_num_threads(faiss_thread_count())
        index.train(x)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, metric)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        faiss.omp_set_num_threads(1)  # parallel insertion makes the graph irreproducible
    index.add(x)
    return index


def _complete_search(index: faiss.Index, x: np.ndarray, k: int) -> np.ndarray:
    """Indices (M, k) of the ``k`` indexed vectors nearest to each row of ``x``, none missing.

    An approximate index can come back short (faiss pads with -1) for a few rows, e.g. IVF when
    the features of a collapsed model sit in a few points and a row's probed cells hold fewer
    than ``k`` vectors; those rows are searched again over the whole index (every IVF cell:
    exact; HNSW: the search breadth raised to the index size).
    """
    _set_search_breadth(index, k)
    faiss.omp_set_num_threads(faiss_thread_count())
    _, found = index.search(x, k)
    short = (found < 0).any(axis=1)
    if short.any():
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = index.nlist
        elif isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = index.ntotal
        _, found[short] = index.search(x[short], k)
        _set_search_breadth(index, k)
    if (found < 0).any():
        raise RuntimeError(f"the index returned fewer than {k} neighbours for "
                           f"{int((found < 0).any(axis=1).sum())} samples even when searched whole")
    return found


def _set_search_breadth(index: faiss.Index, k: int) -> None:
    """How much of an approximate index a search visits (enough for ``k`` results)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(index.nlist, IVF_PROBES)


def query_neighbors(index: faiss.Index, features: np.ndarray, k: int, *,
                    normalize: bool = True) -> np.ndarray:
    """Indices (N, k) int64 of each sample's ``k`` nearest neighbours, the sample itself excluded.

    ``index`` must hold exactly ``features`` in the same order (as made by ``build_index`` with
    the same ``normalize``): row i of the answer lists the neighbours of sample i, nearest first.
    The index is asked for k + 1 neighbours and sample i is dropped from row i; when i is not
    among them (it has more than k exact duplicates, tied with it) the farthest is dropped. A
    sample for which an approximate index finds fewer than k + 1 is searched again over the
    whole index (``_complete_search``).
    """
    x = _as_features(features, normalize)
    n_samples, dim = x.shape
    if index.ntotal != n_samples or index.d != dim:
        raise ValueError(
            f"index holds {index.ntotal} vectors of dimension {index.d}, "
            f"features are {n_samples} x {dim}; query with the features the index was built from"
        )
    expected_metric = faiss.METRIC_INNER_PRODUCT if normalize else faiss.METRIC_L2
    if index.metric_type != expected_metric:
        raise ValueError(
            f"index metric does not match normalize={normalize}; "
            "build and query with the same normalize setting"
        )
    _check_k(k, n_samples)

    found = _complete_search(index, x, k + 1)

    is_self = found == np.arange(n_samples)[:, None]
    dropped = is_self.copy()
    dropped[~is_self.any(axis=1), -1] = True
    return found[~dropped].reshape(n_samples, k).astype(np.int64, copy=False)


def search_index(index: faiss.Index, queries: np.ndarray, k: int, *,
                 normalize: bool = True) -> np.ndarray:
    """Indices (M, k) int64 of the ``k`` indexed vectors nearest to each of ``queries``.

    For new samples that are not in the index (e.g. scoring incoming data against a training
    set's index); ``normalize`` must match the one the index was built with.
    """
    x = _as_features(queries, normalize)
    if x.shape[1] != index.d:
        raise ValueError(f"queries have dimension {x.shape[1]}, the index {index.d}")
    if not 1 <= k <= index.ntotal:
        raise ValueError(f"k must be in [1, {index.ntotal}] for an index of {index.ntotal} vectors, got {k}")
    return _complete_search(index, x, k).astype(np.int64, copy=False)


def nearest_neighbors(features: np.ndarray, k: int, method: str = "auto", *,
                      normalize: bool = True) -> np.ndarray:
    """Indices (N, k) int64 of each sample's ``k`` nearest neighbours over all of ``features``.

    Row i lists the neighbours of sample i, nearest first, never i itself. ``features`` is
    (N, D); ``method`` and ``normalize`` are as in ``build_index``.
    """
    _check_k(k, len(features))
    index = build_index(features, method, normalize=normalize)
    return query_neighbors(index, features, k, normalize=normalize)


def neighbors_within_groups(features: np.ndarray, k: int, group_size: int, seed, *,
                            normalize: bool = True) -> np.ndarray:
    """Indices (N, k) int64 of each sample's ``k`` nearest neighbours within a random group.

    The samples are shuffled (numpy generator seeded by ``seed``, an int or a sequence of ints)
    and cut into ``N // group_size`` groups of ``group_size`` to ``2 group_size - 1`` samples;
    each sample's neighbours are the nearest ones of its own group (exact search, the sample
    excluded), so a search over a mini-batch of random samples, as the method's reference code
    does, in place of the whole training set. Row i lists global indices, nearest first.
    """
    n_samples = len(features)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 2:
        raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}")
    groups = np.array_split(np.random.default_rng(seed).permutation(n_samples),
                            max(1, n_samples // group_size))
    smallest = min(len(group) for group in groups)
    _check_k(k, smallest, f"{smallest}, the smallest group of N = {n_samples} samples cut by "
                          f"group_size {group_size}")
    x = _as_features(features, normalize)
    neighbors = np.empty((n_samples, k), dtype=np.int64)
    for group in groups:
        group_features = x[group]
        index = build_index(group_features, "exact", normalize=normalize)
        neighbors[group] = group[query_neighbors(index, group_features, k, normalize=normalize)]
    return neighbors
