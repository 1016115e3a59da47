import json

import numpy as np
import pytest

from mixnn_core.noise import ASYMMETRIC_MAPS, inject_noise

N = 20_000
C = 10
# Binomial standard deviation of a fraction over N samples is at most 0.5 / sqrt(N) = 0.0035;
# 0.015 is more than four of them.
TOLERANCE = 0.015


@pytest.fixture
def clean_labels():
    return np.random.default_rng(123).integers(0, C, size=N)


@pytest.mark.parametrize("rate", [0.2, 0.8])
def test_symmetric_draws_from_all_classes_including_the_true_one(clean_labels, rate):
    noisy, info = inject_noise(clean_labels, C, "symmetric", rate, seed=0)
    # round(rate * N) samples are resampled; 1 in C of them keeps its label by chance.
    expected = rate * (C - 1) / C
    assert abs(np.mean(noisy != clean_labels) - expected) < TOLERANCE
    assert info["realised_noise_rate"] == pytest.approx(np.mean(noisy != clean_labels))
    assert info["n_wrong"] == int(np.sum(noisy != clean_labels))


def test_symmetric_exclusive_realises_the_rate(clean_labels):
    noisy, info = inject_noise(clean_labels, C, "symmetric_exclusive", 0.4, seed=0)
    # Exactly round(0.4 * N) samples get another class.
    assert np.sum(noisy != clean_labels) == round(0.4 * N)
    assert info["realised_noise_rate"] == pytest.approx(0.4)


def test_symmetric_exclusive_new_labels_spread_over_the_other_classes(clean_labels):
    noisy, _ = inject_noise(clean_labels, C, "symmetric_exclusive", 1.0, seed=1)
    from_class_0 = noisy[clean_labels == 0]
    counts = np.bincount(from_class_0, minlength=C)
    assert counts[0] == 0
    share = counts[1:] / from_class_0.size
    assert np.all(np.abs(share - 1 / (C - 1)) < 0.03)


def test_asymmetric_cifar10_flips_only_the_named_pairs(clean_labels):
    noisy, info = inject_noise(clean_labels, C, "asymmetric", 0.4, seed=0, dataset="cifar10")
    targets = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    changed = noisy != clean_labels
    for c in range(C):
        of_class = clean_labels == c
        if c in targets:
            assert set(np.unique(noisy[of_class])) == {c, targets[c]}
            assert abs(changed[of_class].mean() - 0.4) < 0.04
        else:
            assert not changed[of_class].any()
    # 5 of the 10 (equally frequent) classes are mapped: about half of 0.4 of all labels change.
    assert abs(info["realised_noise_rate"] - 0.4 * 5 / 10) < TOLERANCE
    assert info["dataset"] == "cifar10"


def test_asymmetric_cifar100_shifts_within_blocks_of_five():
    labels = np.repeat(np.arange(100), 20)
    noisy, _ = inject_noise(labels, 100, "asymmetric", 1.0, seed=0, dataset="cifar100")
    assert noisy[labels == 0][0] == 1
    assert noisy[labels == 4][0] == 0
    assert noisy[labels == 9][0] == 5
    assert noisy[labels == 99][0] == 95
    assert np.all(noisy // 5 == labels // 5)
    assert np.all(noisy != labels)


@pytest.mark.parametrize("dataset, expected", [
    ("mnist", {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
    ("fashion_mnist", {0: 6, 6: 0, 2: 4, 4: 2, 5: 7}),
    ("fashion-mnist", {0: 6, 6: 0, 2: 4, 4: 2, 5: 7}),
])
def test_asymmetric_maps_at_rate_one(dataset, expected):
    labels = np.arange(10)
    noisy, _ = inject_noise(labels, 10, "asymmetric", 1.0, seed=0, dataset=dataset)
    assert noisy.tolist() == [expected.get(c, c) for c in range(10)]


def test_asymmetric_maps_constant():
    assert ASYMMETRIC_MAPS["cifar10"] == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert ASYMMETRIC_MAPS["cifar100"][42] == 43
    assert ASYMMETRIC_MAPS["cifar100"][44] == 40


def test_pairflip_goes_to_the_next_class(clean_labels):
    noisy, info = inject_noise(clean_labels, C, "pairflip", 0.3, seed=0)
    changed = noisy != clean_labels
    assert np.all(noisy[changed] == (clean_labels[changed] + 1) % C)
    assert abs(changed.mean() - 0.3) < TOLERANCE
    assert info["confusion"][C - 1][0] == int(np.sum(changed & (clean_labels == C - 1)))


def test_transition_identity_changes_nothing(clean_labels):
    noisy, info = inject_noise(clean_labels, C, "transition", 0.0, seed=0,
                               transition=np.eye(C))
    assert np.array_equal(noisy, clean_labels)
    assert info["n_wrong"] == 0
    assert info["rate"] is None


def test_transition_permutation_is_applied_exactly(clean_labels):
    permutation = np.random.default_rng(5).permutation(C)
    matrix = np.eye(C)[permutation]  # row c is one-hot at permutation[c]
    noisy, _ = inject_noise(clean_labels, C, "transition", 0.0, seed=0, transition=matrix)
    assert np.array_equal(noisy, permutation[clean_labels])


def test_transition_follows_the_row_probabilities(clean_labels):
    matrix = np.full((C, C), 0.0)
    matrix[np.arange(C), np.arange(C)] = 0.7
    matrix[np.arange(C), (np.arange(C) + 3) % C] = 0.2
    matrix[np.arange(C), (np.arange(C) + 5) % C] = 0.1
    noisy, _ = inject_noise(clean_labels, C, "transition", 0.0, seed=0, transition=matrix)
    offsets = (noisy - clean_labels) % C
    assert set(np.unique(offsets)) == {0, 3, 5}
    assert abs(np.mean(offsets == 0) - 0.7) < TOLERANCE
    assert abs(np.mean(offsets == 3) - 0.2) < TOLERANCE
    assert abs(np.mean(offsets == 5) - 0.1) < TOLERANCE


def test_same_seed_same_labels_other_seed_other_labels(clean_labels):
    first, first_info = inject_noise(clean_labels, C, "symmetric", 0.5, seed=7)
    again, again_info = inject_noise(clean_labels, C, "symmetric", 0.5, seed=7)
    other, _ = inject_noise(clean_labels, C, "symmetric", 0.5, seed=8)
    assert np.array_equal(first, again)
    assert first_info == again_info
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("mode, extra", [
    ("symmetric", {}),
    ("symmetric_exclusive", {}),
    ("asymmetric", {"dataset": "cifar10"}),
    ("pairflip", {}),
    ("transition", {"transition": np.full((C, C), 1 / C)}),
])
def test_input_untouched_output_int64_info_json(clean_labels, mode, extra):
    original = clean_labels.copy()
    noisy, info = inject_noise(clean_labels, C, mode, 0.5, seed=0, **extra)
    assert np.array_equal(clean_labels, original)
    assert noisy.dtype == np.int64
    assert noisy.shape == (N,)
    decoded = json.loads(json.dumps(info))
    assert decoded["mode"] == mode
    assert decoded["n_samples"] == N
    confusion = np.array(decoded["confusion"])
    assert confusion.shape == (C, C)
    assert confusion.sum() == N
    assert np.trace(confusion) == N - decoded["n_wrong"]
    for c, entry in enumerate(decoded["per_class"]):
        assert entry["n"] == int(np.sum(clean_labels == c))
        assert entry["n_wrong"] == int(np.sum((clean_labels == c) & (noisy != clean_labels)))


def test_small_example_info():
    labels = np.array([0, 0, 1, 2])
    noisy, info = inject_noise(labels, 3, "transition", 0.0, seed=0,
                               transition=np.eye(3)[[1, 1, 2]])  # 0 -> 1, 1 -> 1, 2 -> 2
    assert noisy.tolist() == [1, 1, 1, 2]
    assert info["n_wrong"] == 2
    assert info["realised_noise_rate"] == 0.5
    assert info["confusion"] == [[0, 2, 0], [0, 1, 0], [0, 0, 1]]
    assert [entry["n_wrong"] for entry in info["per_class"]] == [2, 0, 0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="gaussian"), r"unknown noise mode 'gaussian'.*symmetric_exclusive.*transition"),
    (dict(rate=1.5), r"rate must be in \[0, 1\]"),
    (dict(rate=-0.1), r"rate must be in \[0, 1\]"),
    (dict(labels=np.array([0, 1, 10])), r"labels must lie in \[0, 10\).*label 10"),
    (dict(labels=np.array([0, -1])), r"labels must lie in \[0, 10\)"),
    (dict(labels=np.array([0.5, 1.0])), r"labels must be integers"),
    (dict(mode="asymmetric"), r"needs dataset=.*cifar10.*cifar100.*fashion_mnist.*mnist"),
    (dict(mode="asymmetric", dataset="imagenet"), r"no asymmetric noise map.*'imagenet'.*cifar10"),
    (dict(mode="asymmetric", dataset="cifar100"), r"cifar100 map uses class 99.*num_classes is 10"),
    (dict(mode="transition"), r"needs transition="),
    (dict(mode="transition", transition=np.eye(3)), r"shape \(10, 10\), got \(3, 3\)"),
])
def test_clear_errors(kwargs, message):
    arguments = dict(labels=np.arange(10), num_classes=10, mode="symmetric", rate=0.5, seed=0)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        inject_noise(**arguments)


def test_bad_transition_rows_are_named():
    matrix = np.eye(4)
    matrix[2] = [0.5, 0.6, 0.0, 0.0]
    with pytest.raises(ValueError, match="transition row 2 must be non-negative and sum to 1"):
        inject_noise(np.arange(4), 4, "transition", 0.0, seed=0, transition=matrix)
    matrix[2] = [1.2, -0.2, 0.0, 0.0]
    with pytest.raises(ValueError, match="transition row 2"):
        inject_noise(np.arange(4), 4, "transition", 0.0, seed=0, transition=matrix)


def test_transition_rows_within_tolerance_are_accepted():
    matrix = np.eye(4) * (1 - 5e-7)
    noisy, _ = inject_noise(np.arange(4), 4, "transition", 0.0, seed=0, transition=matrix)
    assert noisy.tolist() == [0, 1, 2, 3]
