"""Nearest neighbours of every training sample in feature space (step 3 of the method).

Representations of same-class images cluster even when their labels are wrong, so a sample's
nearest neighbours mostly share its true class. Each sample is mixed with its ``k`` nearest
neighbours over the whole training set, itself excluded.

Two kinds of faiss index are offered:

- ``"exact"``: brute force (``IndexFlatIP`` / ``IndexFlatL2``), the true neighbours;
- ``"hnsw"``: an approximate graph index (``IndexHNSWFlat``), cheaper at large N;

and ``"auto"`` picks between them by the number of samples (see ``AUTO_HNSW_MIN_SAMPLES``).
With ``normalize=True`` (the default) features are L2-normalised and compared by inner product,
i.e. cosine similarity; with ``normalize=False`` by Euclidean (L2) distance.
"""

from __future__ import annotations

import os

import faiss
import numpy as np

METHODS = ("auto", "exact", "hnsw")

# HNSW graph degree (faiss' usual choice; higher = better recall, more memory and build time).
HNSW_M = 32
# Candidate-list sizes while building and while searching the graph. faiss' defaults (40 / 16)
# give a recall of only ~0.8 on clustered 64-d data; 64 / 64 reach >= 0.97 there at about the
# same wall time as building. The search value is raised to k + 1 when k is larger.
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32

# ``method="auto"`` uses HNSW from this many samples on, exact search below. Measured with
#   python bench/knn_auto_threshold.py
# (2 shared cores, faiss-cpu 1.15.1, clustered features, all-vs-all search; seconds, build +
# search; the time barely depends on k in 1..8):
#
#   TABLE_PLACEHOLDER
AUTO_HNSW_MIN_SAMPLES = 0


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


def _check_k(k: int, n_samples: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n_samples:
        raise ValueError(
            f"k must be an integer with 1 <= k < N (N = {n_samples} samples), got k = {k!r}"
        )


def _resolve_method(method: str, n_samples: int) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown neighbour search method {method!r}; valid: {', '.join(METHODS)}")
    if method == "auto":
        return "hnsw" if n_samples >= AUTO_HNSW_MIN_SAMPLES else "exact"
    return method


def build_index(features: np.ndarray, method: str = "exact", *,
                normalize: bool = True) -> faiss.Index:
    """A faiss index holding all ``features`` (N, D), ready for ``query_neighbors``.

    ``method`` is ``"exact"``, ``"hnsw"`` or ``"auto"`` (by N, see ``AUTO_HNSW_MIN_SAMPLES``).
    ``normalize=True`` stores L2-normalised features under the inner-product metric (cosine
    similarity); ``normalize=False`` stores them as given under the L2 metric. HNSW graphs are
    built by several threads, so their exact shape, and rarely a neighbour, can vary between
    runs. The index can be saved with ``faiss.write_index``.
    """
    x = _as_features(features, normalize)
    n_samples, dim = x.shape
    metric = faiss.METRIC_INNER_PRODUCT if normalize else faiss.METRIC_L2
    if _resolve_method(method, n_samples) == "exact":
        index = faiss.IndexFlatIP(dim) if normalize else faiss.IndexFlatL2(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, metric)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    faiss.omp_set_num_threads(faiss_thread_count())
    index.add(x)
    return index


def query_neighbors(index: faiss.Index, features: np.ndarray, k: int, *,
                    normalize: bool = True) -> np.ndarray:
    """Indices (N, k) int64 of each sample's ``k`` nearest neighbours, the sample itself excluded.

    ``index`` must hold exactly ``features`` in the same order (as made by ``build_index`` with
    the same ``normalize``): row i of the answer lists the neighbours of sample i, nearest first.
    The index is asked for k + 1 neighbours and sample i is dropped from row i; when i is not
    among them (it has more than k exact duplicates, tied with it) the farthest is dropped.
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

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k + 1)
    faiss.omp_set_num_threads(faiss_thread_count())
    _, found = index.search(x, k + 1)
    if (found < 0).any():
        raise RuntimeError(
            f"the index returned fewer than k + 1 = {k + 1} neighbours for "
            f"{int((found < 0).any(axis=1).sum())} samples; use method='exact'"
        )

    is_self = found == np.arange(n_samples)[:, None]
    dropped = is_self.copy()
    dropped[~is_self.any(axis=1), -1] = True
    return found[~dropped].reshape(n_samples, k).astype(np.int64, copy=False)


def nearest_neighbors(features: np.ndarray, k: int, method: str = "auto", *,
                      normalize: bool = True) -> np.ndarray:
    """Indices (N, k) int64 of each sample's ``k`` nearest neighbours over all of ``features``.

    Row i lists the neighbours of sample i, nearest first, never i itself. ``features`` is
    (N, D); ``method`` and ``normalize`` are as in ``build_index``.
    """
    _check_k(k, len(features))
    index = build_index(features, method, normalize=normalize)
    return query_neighbors(index, features, k, normalize=normalize)
