import faiss
import numpy as np
import pytest

from mixnn_core import knn


def brute_force_neighbors(features, k, normalize):
    """Each row's k nearest other rows, by cosine similarity or by L2 distance, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        distance = -x @ x.T
    else:
        distance = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    return np.argsort(distance, axis=1, kind="stable")[:, :k]


def clustered(n_samples, dim, n_clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    members = rng.integers(0, n_clusters, size=n_samples)
    return (centres[members] + 0.5 * rng.normal(size=(n_samples, dim))).astype(np.float32)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 5])
def test_exact_matches_brute_force(normalize, k):
    features = np.random.default_rng(0).normal(size=(400, 12))
    found = knn.nearest_neighbors(features, k, "exact", normalize=normalize)
    assert found.dtype == np.int64
    assert found.shape == (400, k)
    assert np.array_equal(found, brute_force_neighbors(features, k, normalize))
    assert not np.any(found == np.arange(400)[:, None])


def test_cosine_ignores_scale_and_l2_does_not():
    # Sample 1 points the same way as sample 0 but is far away; sample 2 is near but turned.
    features = np.array([[1.0, 0.0], [10.0, 0.0], [1.0, 0.5], [-1.0, 0.0]])
    assert knn.nearest_neighbors(features, 1, "exact", normalize=True)[0, 0] == 1
    assert knn.nearest_neighbors(features, 1, "exact", normalize=False)[0, 0] == 2


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_approximate_recall_on_clustered_data(method):
    features = clustered(20_000, 64, 50, seed=1)
    exact = knn.nearest_neighbors(features, 5, "exact")
    approx = knn.nearest_neighbors(features, 5, method)
    assert approx.shape == (20_000, 5)
    assert not np.any(approx == np.arange(20_000)[:, None])
    hits = sum(np.intersect1d(a, e).size for a, e in zip(approx, exact))
    assert hits / exact.size >= 0.95


def test_ivf_index_is_reproducible_and_sized_by_the_data():
    features = clustered(5_000, 32, 20, seed=2)
    index = knn.build_index(features, "ivf")
    assert isinstance(index, faiss.IndexIVFFlat) and index.nlist == knn.ivf_list_count(5_000) == 141
    first = knn.query_neighbors(index, features, 3)
    assert index.nprobe == knn.IVF_PROBES
    assert all(np.array_equal(first, knn.nearest_neighbors(features, 3, "ivf")) for _ in range(2))


def ivf_cells(index: faiss.Index) -> np.ndarray:
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
    return faiss.rev_swig_ptr(quantizer.get_xb(), quantizer.ntotal * quantizer.d).copy()


def test_ivf_cells_learnt_from_a_seeded_subset_are_the_same_every_build_and_thread_count(monkeypatch):
    # 20,000 samples, 283 cells: k-means learns from 64 * 283 = 18,112 of them
    features = clustered(20_000, 16, 40, seed=3)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one_thread = knn.build_index(features, "ivf")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    two_threads = knn.build_index(features, "ivf")
    assert np.array_equal(ivf_cells(one_thread), ivf_cells(two_threads))
    assert np.array_equal(knn.query_neighbors(one_thread, features, 1), knn.query_neighbors(two_threads, features, 1))
    monkeypatch.setattr(knn, "IVF_TRAINING_POINTS_PER_CELL", 256)  # faiss' default: every sample
    assert not np.array_equal(ivf_cells(knn.build_index(features, "ivf")), ivf_cells(two_threads))


def test_collapsed_features_get_exact_neighbours_where_ivf_comes_back_short(monkeypatch):
    """Features of a collapsed model (nearly all one point, a few apart): some samples' probed
    IVF cells hold fewer than k + 1 vectors (a 20-epoch run at sym 80 % stopped on this); those
    samples are searched again over every cell (exact) and the search goes on."""
    # how k-means shares the identical points among its identical centroids depends on the
    # thread count too: with one thread (OMP_NUM_THREADS=1) no probed cell came back short
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    rng = np.random.default_rng(0)
    features = np.tile(rng.normal(size=(1, 16)), (20_000, 1))
    features[:5] = rng.normal(size=(5, 16))
    index = knn.build_index(features, "ivf")
    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    index.nprobe = knn.IVF_PROBES  # as query_neighbors searches
    short = (index.search(normalized.astype(np.float32), 2)[1] < 0).any(axis=1)
    assert short.any()  # the situation this test is about
    found = knn.query_neighbors(index, features, 1)
    assert found.shape == (20_000, 1) and (found >= 0).all()
    assert not np.any(found[:, 0] == np.arange(20_000))
    # which rows come back short depends on how k-means breaks the ties between its identical
    # centroids, which differs between CPUs: the few distinct rows (AVX2), or nearly all (AVX512)
    checked = np.flatnonzero(short)[:50]
    similarity = normalized[checked] @ normalized.T
    similarity[np.arange(len(checked)), checked] = -np.inf  # a sample is not its own neighbour
    assert np.allclose(similarity[np.arange(len(checked)), found[checked, 0]], similarity.max(axis=1))
    queried = knn.search_index(index, features[checked], 2)  # new data against the same index
    assert (queried >= 0).all()
    assert np.allclose(np.sum(normalized[queried[:, 0]] * normalized[checked], axis=1), 1)  # itself or a copy
    assert index.nprobe == knn.IVF_PROBES  # the whole-index search did not stay on


@pytest.mark.parametrize("method", ["exact", "hnsw", "ivf"])
@pytest.mark.parametrize("copies, k", [(3, 2), (6, 2)])
def test_duplicate_rows(method, copies, k):
    # Each distinct point appears `copies` times; its nearest neighbours are its other copies.
    # With 6 copies and k = 2 the k + 1 tied results need not contain the sample itself.
    distinct = np.random.default_rng(2).normal(size=(60, 8))
    features = np.repeat(distinct, copies, axis=0)
    group = np.arange(len(features)) // copies
    found = knn.nearest_neighbors(features, k, method)
    assert found.shape == (len(features), k)
    assert not np.any(found == np.arange(len(features))[:, None])
    assert np.all(group[found] == group[:, None])
    assert all(len(set(row)) == k for row in found.tolist())


def test_auto_uses_the_work_threshold(monkeypatch):
    features = np.random.default_rng(3).normal(size=(50, 4))
    assert isinstance(knn.build_index(features, "auto"), faiss.IndexFlat)
    monkeypatch.setattr(knn, "AUTO_EXACT_MAX_WORK", 50 * 50 * 4 - 1)
    assert isinstance(knn.build_index(features, "auto"), faiss.IndexIVFFlat)


def test_hnsw_neighbours_are_reproducible():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 32))
    features = centres[rng.integers(0, 20, 6000)] + 0.8 * rng.normal(size=(6000, 32))
    first = knn.nearest_neighbors(features, 3, "hnsw")
    assert all(np.array_equal(first, knn.nearest_neighbors(features, 3, "hnsw")) for _ in range(3))


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_index_survives_write_and_read(tmp_path, method):
    features = np.random.default_rng(4).normal(size=(300, 10)).astype(np.float32)
    index = knn.build_index(features, method, normalize=False)
    assert index.metric_type == faiss.METRIC_L2
    faiss.write_index(index, str(tmp_path / "features.faiss"))
    reread = faiss.read_index(str(tmp_path / "features.faiss"))
    found = knn.query_neighbors(reread, features, 3, normalize=False)
    assert np.array_equal(found, knn.query_neighbors(index, features, 3, normalize=False))


def test_thread_count_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert knn.faiss_thread_count() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert knn.faiss_thread_count() >= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_rejected(bad):
    features = np.random.default_rng(5).normal(size=(20, 3))
    features[7, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf in 1 rows.*sample 7"):
        knn.nearest_neighbors(features, 2)


@pytest.mark.parametrize("k", [0, -1, 20, 25])
def test_k_out_of_range_rejected(k):
    features = np.random.default_rng(6).normal(size=(20, 3))
    with pytest.raises(ValueError, match=rf"1 <= k < N \(N = 20 samples\), got k = {k}"):
        knn.nearest_neighbors(features, k)


def test_other_errors():
    features = np.random.default_rng(7).normal(size=(20, 3))
    with pytest.raises(ValueError, match="unknown neighbour search method 'ball_tree'.*hnsw"):
        knn.nearest_neighbors(features, 2, "ball_tree")
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        knn.build_index(features[:, 0])
    with pytest.raises(ValueError, match="index holds 20 vectors of dimension 3"):
        knn.query_neighbors(knn.build_index(features), features[:10], 2)
    with pytest.raises(ValueError, match="metric does not match normalize=False"):
        knn.query_neighbors(knn.build_index(features), features, 2, normalize=False)


@pytest.mark.parametrize("normalize", [True, False])
def test_neighbours_within_groups_are_the_nearest_of_a_random_group(normalize):
    """Each sample's neighbours are the nearest members of its own group (a seeded random
    partition into N // group_size groups), never itself; the same seed gives the same groups."""
    features = clustered(1000, 8, 10, seed=3)
    found = knn.neighbors_within_groups(features, 2, 128, seed=(0, 7), normalize=normalize)
    groups = np.array_split(np.random.default_rng((0, 7)).permutation(1000), 1000 // 128)
    assert len(groups) == 7 and all(128 <= len(group) < 256 for group in groups)
    for group in groups:
        expected = group[brute_force_neighbors(features[group], 2, normalize)]
        assert np.array_equal(found[group], expected)
    assert found.dtype == np.int64 and not np.any(found == np.arange(1000)[:, None])
    assert np.array_equal(found, knn.neighbors_within_groups(features, 2, 128, seed=(0, 7), normalize=normalize))
    other = knn.neighbors_within_groups(features, 2, 128, seed=(0, 8), normalize=normalize)
    assert (other != found).mean() > 0.5
    whole_set = knn.nearest_neighbors(features, 1, "exact", normalize=normalize)[:, 0]
    assert (found[:, 0] == whole_set).mean() < 0.5  # a group holds an eighth of the set


def test_neighbours_within_groups_refuse_bad_sizes():
    features = np.random.default_rng(8).normal(size=(20, 3))
    with pytest.raises(ValueError, match="1 <= k < 10, the smallest group of N = 20 samples cut by group_size 8"):
        knn.neighbors_within_groups(features, 10, 8, seed=0)
    with pytest.raises(ValueError, match="group_size must be an integer >= 2"):
        knn.neighbors_within_groups(features, 1, 1, seed=0)
    assert knn.neighbors_within_groups(features, 3, 64, seed=0).shape == (20, 3)  # one group: the set
