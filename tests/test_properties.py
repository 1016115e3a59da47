"""Property-based tests (hypothesis) of the method's pure parts over random sizes, class counts
and label layouts: noise injection, mixing weights, EMA label correction, and the manifest
writer's Parquet and CSV round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixnn_core.correction import ema_update
from mixnn_core.export import MANIFEST_SCHEMA_VERSION, build_manifest, write_manifest
from mixnn_core.mixing import SELF_WEIGHT_EPSILON, mixing_weights, replacement_weights
from mixnn_core.noise import ASYMMETRIC_MAPS, inject_noise
from mixnn_core.outputs import sample_outputs

PROPERTIES = settings(max_examples=50, deadline=None)
MANIFEST_PROPERTIES = settings(max_examples=50, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])

unit_floats = st.floats(0.0, 1.0, allow_nan=False)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def labelled(draw, max_samples: int = 60, max_classes: int = 12) -> tuple[np.ndarray, int]:
    """(labels, num_classes): any layout, from one class only to every class, empty included."""
    num_classes = draw(st.integers(1, max_classes))
    labels = draw(st.lists(st.integers(0, num_classes - 1), max_size=max_samples))
    return np.array(labels, dtype=np.int64), num_classes


def simplex_rows(rng: np.random.Generator, n: int, c: int, sparse: bool) -> np.ndarray:
    """(n, c) rows in the probability simplex; ``sparse`` puts exact zeros in."""
    rows = rng.dirichlet(np.full(c, 0.5), size=n)
    if sparse:
        rows[rng.random((n, c)) < 0.5] = 0.0
        rows[rows.sum(axis=1) == 0, 0] = 1.0
        rows /= rows.sum(axis=1, keepdims=True)
    return rows


# --- noise injection -------------------------------------------------------------------------


def check_report(labels, noisy, info, num_classes):
    wrong = noisy != labels
    assert info["n_samples"] == labels.size and info["n_wrong"] == int(wrong.sum())
    confusion = np.array(info["confusion"]).reshape(num_classes, num_classes)
    assert confusion.sum() == labels.size
    assert confusion.sum(axis=1).tolist() == np.bincount(labels, minlength=num_classes).tolist()
    assert confusion.sum(axis=0).tolist() == np.bincount(noisy, minlength=num_classes).tolist()
    assert [row["n_wrong"] for row in info["per_class"]] == \
        np.bincount(labels[wrong], minlength=num_classes).tolist()


@PROPERTIES
@given(labelled(), st.sampled_from(["symmetric", "symmetric_exclusive", "pairflip"]), unit_floats, seeds)
def test_noise_keeps_labels_in_range_reports_truthfully_and_is_seeded(data, mode, rate, seed):
    labels, num_classes = data
    if mode == "symmetric_exclusive" and num_classes < 2:
        num_classes = 2
    original = labels.copy()
    noisy, info = inject_noise(labels, num_classes, mode, rate, seed)
    np.testing.assert_array_equal(labels, original)  # input untouched
    assert noisy.dtype == np.int64 and noisy.shape == labels.shape
    assert ((noisy >= 0) & (noisy < num_classes)).all()
    check_report(labels, noisy, info, num_classes)
    np.testing.assert_array_equal(inject_noise(labels, num_classes, mode, rate, seed)[0], noisy)
    changed = noisy != labels
    if mode == "symmetric":
        assert changed.sum() <= round(rate * labels.size)
    elif mode == "symmetric_exclusive":
        assert changed.sum() == round(rate * labels.size)
    else:
        np.testing.assert_array_equal(noisy[changed], (labels[changed] + 1) % num_classes)
        if rate in (0.0, 1.0):
            np.testing.assert_array_equal(noisy, (labels + int(rate)) % num_classes)


@PROPERTIES
@given(st.lists(st.integers(0, 9), max_size=80), unit_floats, seeds,
       st.sampled_from(["cifar10", "mnist", "fashion_mnist"]))
def test_asymmetric_noise_only_follows_the_map(labels, rate, seed, dataset):
    labels = np.array(labels, dtype=np.int64)
    noisy, info = inject_noise(labels, 10, "asymmetric", rate, seed, dataset=dataset)
    targets = ASYMMETRIC_MAPS[dataset]
    changed = noisy != labels
    assert all(noisy[i] == targets[labels[i]] for i in np.flatnonzero(changed))
    check_report(labels, noisy, info, 10)


@PROPERTIES
@given(labelled(max_classes=6), seeds, st.booleans())
def test_transition_noise_only_draws_possible_labels(data, seed, sparse):
    labels, num_classes = data
    matrix = simplex_rows(np.random.default_rng(seed), num_classes, num_classes, sparse)
    noisy, info = inject_noise(labels, num_classes, "transition", 0.0, seed, transition=matrix)
    assert (matrix[labels, noisy] > 0).all()
    check_report(labels, noisy, info, num_classes)


# --- mixing weights --------------------------------------------------------------------------


@PROPERTIES
@given(st.integers(1, 60), st.integers(1, 5), seeds, st.floats(0.0, 1.0))
def test_mixing_weights_are_proportional_to_clean_probability(n, k, seed, share_zero):
    rng = np.random.default_rng(seed)
    p_clean = rng.random(n)
    p_clean[rng.random(n) < share_zero] = 0.0  # from no exact zeros to all of them
    p_clean[rng.random(n) < 0.1] = 1.0
    neighbors = rng.integers(0, n, size=(n, k))
    weights = mixing_weights(p_clean, neighbors)
    assert weights.shape == (n, k + 1) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    members = np.concatenate([p_clean[:, None] + SELF_WEIGHT_EPSILON, p_clean[neighbors]], axis=1)
    np.testing.assert_allclose(weights * members.sum(axis=1, keepdims=True), members, rtol=1e-9, atol=1e-15)
    # a set whose members all look noisy keeps its whole weight on the sample itself
    hopeless = (members[:, 1:].sum(axis=1) == 0) & (p_clean == 0)
    np.testing.assert_allclose(weights[hopeless, 0], 1.0)
    # the cleaner member never gets the smaller weight
    order = np.argsort(members, axis=1, kind="stable")
    assert (np.diff(np.take_along_axis(weights, order, axis=1), axis=1) >= -1e-15).all()


@PROPERTIES
@given(st.integers(1, 60), st.integers(1, 5), seeds, st.floats(0.0, 1.0))
def test_replacement_weights_give_the_sample_its_clean_probability(n, k, seed, share_zero):
    rng = np.random.default_rng(seed)
    p_clean = rng.random(n)
    p_clean[rng.random(n) < share_zero] = 0.0
    neighbors = rng.integers(0, n, size=(n, k))
    weights = replacement_weights(p_clean, neighbors)
    assert weights.shape == (n, k + 1) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(weights[:, 0], p_clean)
    # among the neighbours, the cleaner never gets the smaller weight
    order = np.argsort(p_clean[neighbors], axis=1, kind="stable")
    assert (np.diff(np.take_along_axis(weights[:, 1:], order, axis=1), axis=1) >= -1e-15).all()


# --- EMA label correction --------------------------------------------------------------------


@PROPERTIES
@given(st.integers(0, 40), st.integers(1, 12), unit_floats, seeds, st.booleans())
def test_ema_stays_in_the_simplex_between_its_inputs(n, c, alpha, seed, sparse):
    rng = np.random.default_rng(seed)
    soft, probs = simplex_rows(rng, n, c, sparse), simplex_rows(rng, n, c, sparse)
    updated = ema_update(soft, probs, alpha)
    assert updated.shape == (n, c) and (updated >= 0).all()
    np.testing.assert_allclose(updated.sum(axis=1), 1.0, rtol=1e-12)
    assert (updated >= np.minimum(soft, probs) - 1e-15).all()
    assert (updated <= np.maximum(soft, probs) + 1e-15).all()
    # the distance to the prediction shrinks by exactly alpha per update
    np.testing.assert_allclose(updated - probs, alpha * (soft - probs), atol=1e-15)
    np.testing.assert_array_equal(ema_update(soft, probs, 1.0), soft)
    np.testing.assert_allclose(ema_update(soft, probs, 0.0), probs, atol=0)


# --- the manifest writer ---------------------------------------------------------------------

# NUL is refused at ingestion (CSV readers stop at it): see test_ingest's NUL test.
class_name_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
                          min_size=1, max_size=8)
STRING_COLUMNS = ["key", "source_ref", "given_label_name", "suggested_label_name"]


@MANIFEST_PROPERTIES
@given(st.integers(1, 40), st.lists(class_name_text, min_size=2, max_size=8, unique=True),
       seeds, st.booleans(), st.booleans())
def test_manifest_round_trips_through_parquet_and_csv(tmp_path_factory, n, class_names, seed, noisy, sparse):
    rng = np.random.default_rng(seed)
    c = len(class_names)
    given_labels = rng.integers(0, c, n)
    soft = simplex_rows(rng, n, c, sparse).astype(np.float32)
    outputs = sample_outputs(given_labels, soft, rng.random(n))
    dataset = pd.DataFrame({"sample_id": np.arange(n, dtype=np.int64),
                            "key": [f"{i:08d}" for i in range(n)],
                            "source_ref": [f"{class_names[i % c]}/{i},x.png" for i in range(n)]})
    true_labels = rng.integers(0, c, n) if noisy else None
    manifest = build_manifest(dataset, class_names, outputs, true_labels=true_labels)
    out_dir = tmp_path_factory.mktemp("manifest")
    parquet_path, csv_path = write_manifest(manifest, outputs.soft_label, out_dir)

    assert manifest["sample_id"].tolist() == list(range(n))
    assert (manifest["suggested_label"] == soft.argmax(axis=1)).all()
    assert (manifest["is_label_issue"] == (manifest["label_quality"] < manifest["suggested_confidence"])).all()
    assert manifest["given_label_name"].tolist() == [class_names[label] for label in given_labels]
    if noisy:
        assert (manifest["is_noisy"] == (true_labels != given_labels)).all()

    table = pq.read_table(parquet_path)
    assert table.schema.metadata[b"mixnn_manifest_version"] == MANIFEST_SCHEMA_VERSION.encode()
    from_parquet = table.to_pandas()
    np.testing.assert_array_equal(np.stack(from_parquet.pop("soft_label").to_numpy()), soft)
    pd.testing.assert_frame_equal(from_parquet, manifest, check_dtype=False)

    # CSV is untyped: read the text columns as text, and "NA"-like names stay names
    from_csv = pd.read_csv(csv_path, dtype={name: str for name in STRING_COLUMNS}, keep_default_na=False)
    assert list(from_csv.columns) == list(manifest.columns)
    pd.testing.assert_frame_equal(from_csv, manifest, check_dtype=False)
