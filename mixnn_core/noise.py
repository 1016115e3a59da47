"""Synthetic label noise, to measure how well wrong labels are found and fixed.

``inject_noise`` corrupts clean labels the way published noisy-label benchmarks do, and reports
what it actually did (the realised wrong-label fraction can differ from the nominal rate):

- ``"symmetric"``: round(rate * N) samples chosen at random get a label drawn uniformly from
  ALL C classes, the true one included, so about rate * (C - 1) / C of the labels end up wrong
  (CIFAR-10 at rate 0.8: about 72 %). This is the convention of most published tables.
- ``"symmetric_exclusive"``: as above, but the new label is drawn from the C - 1 other classes,
  so about ``rate`` of the labels end up wrong.
- ``"asymmetric"``: class-dependent flips between similar classes of a named dataset
  (``ASYMMETRIC_MAPS``); each sample of a mapped class flips to its target with probability
  ``rate``, so the overall wrong fraction is ``rate`` times the share of mapped samples.
- ``"pairflip"``: each sample of class c flips to (c + 1) mod C with probability ``rate``.
- ``"transition"``: each sample of class c gets a label drawn from row c of a user-given C x C
  row-stochastic matrix (``rate`` is unused).
"""

from __future__ import annotations

import numpy as np

MODES = ("symmetric", "symmetric_exclusive", "asymmetric", "pairflip", "transition")

# Class index -> class its samples are flipped to, with the standard class order of each dataset.
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    # truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # next class within each block of 5 consecutive indices (4 -> 0, 9 -> 5, ...)
    "cifar100": {c: 5 * (c // 5) + (c + 1) % 5 for c in range(100)},
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    # T-shirt <-> Shirt, Pullover <-> Coat, Sandal -> Sneaker
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7},
}
_DATASET_ALIASES = {"fashion-mnist": "fashion_mnist"}

ROW_SUM_TOLERANCE = 1e-6


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"labels must lie in [0, {num_classes}); sample {first} has label {labels[first]} "
            f"({int(outside.sum())} samples outside)"
        )
    return labels.astype(np.int64)


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return float(rate)


def _asymmetric_targets(dataset: str | None, num_classes: int) -> tuple[str, np.ndarray]:
    """Canonical dataset name and, per class, the class it flips to (itself when unmapped)."""
    builtin = ", ".join(sorted(ASYMMETRIC_MAPS))
    if dataset is None:
        raise ValueError(f"mode 'asymmetric' needs dataset=, one of: {builtin}")
    name = _DATASET_ALIASES.get(dataset, dataset)
    if name not in ASYMMETRIC_MAPS:
        raise ValueError(f"no asymmetric noise map for dataset {dataset!r}; built-in: {builtin}")
    flips = ASYMMETRIC_MAPS[name]
    largest_class = max(max(flips), max(flips.values()))
    if largest_class >= num_classes:
        raise ValueError(
            f"the {name} map uses class {largest_class}, but num_classes is {num_classes}"
        )
    targets = np.arange(num_classes)
    targets[list(flips)] = list(flips.values())
    return name, targets


def _check_transition(transition: np.ndarray | None, num_classes: int) -> np.ndarray:
    if transition is None:
        raise ValueError("mode 'transition' needs transition=, a C x C row-stochastic matrix")
    matrix = np.asarray(transition, dtype=np.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(
            f"transition must have shape ({num_classes}, {num_classes}), got {matrix.shape}"
        )
    for row_index, row in enumerate(matrix):
        if not np.all(np.isfinite(row)) or (row < 0).any() \
                or abs(row.sum() - 1.0) > ROW_SUM_TOLERANCE:
            raise ValueError(
                f"transition row {row_index} must be non-negative and sum to 1 "
                f"(tolerance {ROW_SUM_TOLERANCE}), got {row.tolist()}"
            )
    return matrix


def draw_from_rows(labels: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each sample, a class drawn from the row of ``matrix`` (C, C; row g: the probability
    that a label g becomes each class) given by its label. A class of probability 0 is never
    drawn."""
    drawn = np.empty_like(labels)
    for row_index in np.unique(labels):
        members = np.flatnonzero(labels == row_index)
        cumulative = np.cumsum(matrix[row_index])
        # Rows sum to 1 only within the tolerance: scale the uniform draws by the row total.
        # side="right" never lands on a zero-probability class; the clip catches a product
        # that rounds up to the total itself.
        draws = np.searchsorted(cumulative, rng.random(members.size) * cumulative[-1],
                                side="right")
        last_possible = np.flatnonzero(matrix[row_index] > 0)[-1]
        drawn[members] = np.minimum(draws, last_possible)
    return drawn


def _resample(labels: np.ndarray, num_classes: int, rate: float, rng: np.random.Generator, *,
              exclude_given: bool) -> np.ndarray:
    """Give round(rate * N) random samples a uniformly drawn label (another one if
    ``exclude_given``)."""
    if exclude_given and num_classes < 2:
        raise ValueError("mode 'symmetric_exclusive' needs num_classes >= 2")
    chosen = rng.choice(labels.size, size=round(rate * labels.size), replace=False)
    noisy = labels.copy()
    if exclude_given:
        offsets = rng.integers(1, num_classes, size=chosen.size)
        noisy[chosen] = (labels[chosen] + offsets) % num_classes
    else:
        noisy[chosen] = rng.integers(0, num_classes, size=chosen.size)
    return noisy


def _flip(labels: np.ndarray, targets: np.ndarray, rate: float,
          rng: np.random.Generator) -> np.ndarray:
    """Each sample takes its entry of ``targets`` with probability ``rate``."""
    return np.where(rng.random(labels.size) < rate, targets, labels)


def noise_report(labels: np.ndarray, noisy_labels: np.ndarray, num_classes: int) -> dict:
    """Counts describing the corruption of ``labels`` into ``noisy_labels``.

    ``n_wrong`` / ``realised_noise_rate``: samples (number / fraction) whose label changed.
    ``per_class``: for each original class c (list position c), its number of samples ``n``
    and how many of them got another label ``n_wrong``. ``confusion[c][d]``: samples of
    original class c now labelled d. All values are plain ints and floats (JSON-serialisable).
    """
    wrong = noisy_labels != labels
    n_samples = int(labels.size)
    confusion = np.bincount(labels * num_classes + noisy_labels,
                            minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    class_sizes = confusion.sum(axis=1)
    class_wrong = class_sizes - np.diag(confusion)
    return {
        "n_samples": n_samples,
        "n_wrong": int(wrong.sum()),
        "realised_noise_rate": float(wrong.mean()) if n_samples else 0.0,
        "per_class": [{"class": c, "n": int(class_sizes[c]), "n_wrong": int(class_wrong[c])}
                      for c in range(num_classes)],
        "confusion": confusion.tolist(),
    }


def inject_noise(labels: np.ndarray, num_classes: int, mode: str, rate: float,
                 seed: int | None, *, dataset: str | None = None,
                 transition: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Corrupted copy of ``labels`` (int64, shape (N,)) and a JSON-serialisable report.

    ``labels`` are clean class indices in [0, num_classes); they are not modified. ``mode`` is
    one of ``MODES`` (see the module docstring); ``rate`` in [0, 1] is the nominal noise rate
    (unused by ``"transition"``, recorded as None). ``dataset`` names the built-in map for
    ``"asymmetric"`` (a key of ``ASYMMETRIC_MAPS``, or ``"fashion-mnist"``); ``transition`` is
    the C x C matrix for ``"transition"``. The same ``seed`` gives the same noisy labels.

    The report holds ``mode``, ``rate``, ``seed``, ``dataset`` and everything of
    ``noise_report``, in particular the realised wrong-label fraction.
    """
    if mode not in MODES:
        raise ValueError(f"unknown noise mode {mode!r}; valid: {', '.join(MODES)}")
    labels = _check_labels(labels, num_classes)
    rate = None if mode == "transition" else _check_rate(rate)
    rng = np.random.default_rng(seed)

    if mode == "transition":
        noisy = draw_from_rows(labels, _check_transition(transition, num_classes), rng)
    elif mode == "asymmetric":
        dataset, targets = _asymmetric_targets(dataset, num_classes)
        noisy = _flip(labels, targets[labels], rate, rng)
    elif mode == "pairflip":
        noisy = _flip(labels, (labels + 1) % num_classes, rate, rng)
    else:
        noisy = _resample(labels, num_classes, rate, rng,
                          exclude_given=mode == "symmetric_exclusive")

    info = {"mode": mode, "rate": rate, "seed": None if seed is None else int(seed),
            "dataset": dataset, **noise_report(labels, noisy, num_classes)}
    return noisy, info
