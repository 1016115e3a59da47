"""Which class is a sample likeliest to be, once its given label is weighed as evidence.

A model's prediction q says what the image looks like; the given label says something too,
how much depends on the noise: under 20 % symmetric noise a label is 41 times likelier to come
from its own class than from any one other, under a flip j -> k only the flip's odds. Bayes'
rule puts the two together: ``posterior[k] ~ q[k] * P(given | true k)``, with P(given | true)
the training run's own confident joint (``given_label_likelihood``). The rule needs q to be
calibrated; a model trained on mixed soft labels is not (digits: its predictions hedge, the
likelihood then overrules right predictions), so q is first tempered to the temperature under
which the noise model explains the GIVEN labels best (``fit_temperature``: maximum likelihood
of ``sum_k q_T[k] P(given | k)``; no true label read). Measured in BENCHMARKS.md,
thirty-eighth pass.
"""

from __future__ import annotations

import numpy as np

from mixnn_core.confident_learning import checked_probs, confident_joint

# log-temperature range of the search: T from 0.05 (sharper) to 20 (flatter)
LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)
# rows the temperature is fitted on at most: one number, which 20,000 rows pin to within a few
# per cent of all 50,000-60,000 (BENCHMARKS.md, forty-third pass) at a third of the time
TEMPERATURE_FIT_ROWS = 20_000


def _likelihood(likelihood: np.ndarray, classes: int) -> np.ndarray:
    likelihood = np.asarray(likelihood, dtype=np.float64)
    if likelihood.shape != (classes, classes):
        raise ValueError(f"likelihood must be ({classes}, {classes}), got {likelihood.shape}")
    return likelihood


def given_label_likelihood(joint: np.ndarray, pseudo_count: float = 1.0) -> np.ndarray:
    """P(given label j | true class k) as a (C, C) matrix, row j, column k: each column of a
    confident joint (``confident_learning.confident_joint``: counts of given j, true k)
    normalised, after adding ``pseudo_count`` to every cell so that a class pair the training
    run never saw confused stays possible (Laplace's rule). Columns sum to 1. Symmetric noise
    at rate r over C classes gives about 1 - r + r / C on the diagonal and r / C off it."""
    joint = np.asarray(joint, dtype=np.float64)
    if joint.ndim != 2 or joint.shape[0] != joint.shape[1]:
        raise ValueError(f"joint must be a square (C, C) count matrix, got shape {joint.shape}")
    if pseudo_count <= 0:
        raise ValueError(f"pseudo_count must be positive, got {pseudo_count}")
    smoothed = joint + pseudo_count
    return smoothed / smoothed.sum(axis=0, keepdims=True)


def run_noise_model(given_labels: np.ndarray, soft_labels: np.ndarray) -> np.ndarray:
    """A run's P(given j | true k) (C, C): ``given_label_likelihood`` of the confident joint of
    its given labels (N,) and its suggestion soft labels (N, C)."""
    return given_label_likelihood(confident_joint(given_labels, soft_labels))


def _log_probs(class_probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(class_probs, dtype=np.float64), 1e-300, None))


def _tempered_log_probs(log_probs: np.ndarray, temperature: float,
                        row_max: np.ndarray | None = None) -> np.ndarray:
    """``row_max``: ``log_probs.max(axis=1, keepdims=True)`` when the caller reuses it across
    temperatures (dividing by T > 0 keeps the largest entry the largest, bit for bit)."""
    logits = log_probs / temperature
    logits -= (log_probs.max(axis=1, keepdims=True) if row_max is None else row_max) / temperature
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def tempered(class_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of ``class_probs`` (N, C) raised to the power 1 / ``temperature`` and renormalised:
    the softmax of the logits divided by the temperature. Below 1 sharper, above 1 flatter;
    the argmax never moves."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return _tempered_log_probs(_log_probs(class_probs), temperature)


def _mean_log_evidence(class_probs: np.ndarray, likelihood_of_given: np.ndarray) -> float:
    return float(np.log(np.clip((class_probs * likelihood_of_given).sum(axis=1), 1e-300, None)).mean())


def given_label_log_likelihood(given_labels: np.ndarray, class_probs: np.ndarray,
                               likelihood: np.ndarray) -> float:
    """Mean log-probability of the given labels under the noise model:
    ``log sum_k class_probs[k] * likelihood[given, k]`` averaged over the samples."""
    given, class_probs = checked_probs(given_labels, class_probs, "class_probs")
    return _mean_log_evidence(class_probs, _likelihood(likelihood, class_probs.shape[1])[given])


def evenly_spaced_rows(n: int, at_most: int) -> np.ndarray:
    """Indices of at most ``at_most`` of ``n`` rows, evenly spread from the first to the last
    (all ``n`` when they fit). Drawn by no random generator, so a subset never repeats a draw
    made with the run's seed elsewhere (noise injection picks the wrong labels with it)."""
    if at_most < 1:
        raise ValueError(f"at_most must be at least 1, got {at_most}")
    if n <= at_most:
        return np.arange(n)
    return np.linspace(0, n - 1, at_most).round().astype(np.int64)


def fit_temperature(given_labels: np.ndarray, class_probs: np.ndarray, likelihood: np.ndarray,
                    iterations: int = 40, max_rows: int = TEMPERATURE_FIT_ROWS) -> float:
    """The temperature T (``LOG_TEMPERATURE_BOUNDS``) under which ``tempered(class_probs, T)``
    explains the given labels best through the noise model ``likelihood``
    (``given_label_log_likelihood``, maximised): a grid over log T, then a golden-section
    search in the grid step either side of its best point (each step reuses the point it
    keeps, 25 + 42 evaluations in all), on ``max_rows`` rows at most (``evenly_spaced_rows``).
    Reads no true label."""
    given, class_probs = checked_probs(given_labels, class_probs, "class_probs")
    if given.size == 0:
        return 1.0
    if given.size > max_rows:
        rows = evenly_spaced_rows(given.size, max_rows)
        given, class_probs = given[rows], class_probs[rows]
    log_probs = _log_probs(class_probs)
    row_max = log_probs.max(axis=1, keepdims=True)
    likelihood_of_given = _likelihood(likelihood, class_probs.shape[1])[given]

    def score(log_t: float) -> float:
        tempered_probs = _tempered_log_probs(log_probs, float(np.exp(log_t)), row_max)
        return _mean_log_evidence(tempered_probs, likelihood_of_given)

    grid = np.linspace(*LOG_TEMPERATURE_BOUNDS, 25)
    best = int(np.argmax([score(x) for x in grid]))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    left_score, right_score = score(left), score(right)
    for _ in range(iterations):
        if left_score >= right_score:
            high, right, right_score = right, left, left_score
            left = high - ratio * (high - low)
            left_score = score(left)
        else:
            low, left, left_score = left, right, right_score
            right = low + ratio * (high - low)
            right_score = score(right)
    return float(np.exp((low + high) / 2.0))


def given_label_posterior(given_labels: np.ndarray, class_probs: np.ndarray,
                          likelihood: np.ndarray) -> np.ndarray:
    """Probability (N, C) of each true class once the given label is taken as evidence:
    ``class_probs[k] * likelihood[given, k]``, normalised per row (Bayes' rule).

    ``class_probs`` (N, C) is an opinion on the true class from the image alone (calibrated:
    ``tempered`` by ``fit_temperature``); ``likelihood`` (C, C) is P(given j | true k)
    (``given_label_likelihood``). A row with no mass where its given label can come from keeps
    the opinion."""
    given, class_probs = checked_probs(given_labels, class_probs, "class_probs")
    likelihood = _likelihood(likelihood, class_probs.shape[1])
    joint = class_probs * likelihood[given]
    total = joint.sum(axis=1, keepdims=True)
    return np.where(total > 0, joint / np.where(total > 0, total, 1.0), class_probs)


def weighed_posterior(given_labels: np.ndarray, class_probs: np.ndarray,
                      soft_labels: np.ndarray) -> tuple[np.ndarray, float]:
    """A run's posterior (N, C) over the true class of its training samples and the temperature
    it tempered ``class_probs`` (its final predictions) to: P(given | true) from the confident
    joint of its ``soft_labels`` (``given_label_likelihood``), the predictions tempered by
    ``fit_temperature``, then ``given_label_posterior``."""
    likelihood = run_noise_model(given_labels, soft_labels)
    temperature = fit_temperature(given_labels, class_probs, likelihood)
    return given_label_posterior(given_labels, tempered(class_probs, temperature), likelihood), temperature


def posterior_clean_probability(given_labels: np.ndarray, class_probs: np.ndarray,
                                labels: np.ndarray) -> np.ndarray:
    """Probability (N,) that ``labels`` (N,) name each sample's true class, by the posterior
    of predictions ``class_probs`` (N, C) once the given labels (N,) are weighed as evidence:
    ``weighed_posterior`` with the predictions themselves in place of the soft labels (no soft
    label needed, so it works before any correction). With ``labels`` the given
    ones it is the probability that a given label is right: about 0.9 for a clean sample the
    model gives only 0.2 under 20 % symmetric noise, where the given label is 41 times likelier
    to come from its own class than from any one other."""
    given, class_probs = checked_probs(given_labels, class_probs, "class_probs")
    labels = np.asarray(labels)
    if labels.shape != given.shape:
        raise ValueError(f"labels must have shape {given.shape}, got {labels.shape}")
    posterior, _ = weighed_posterior(given, class_probs, class_probs)
    return posterior[np.arange(given.size), labels]


def rank_matched(ranking: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (N,) handed out again in the order of ``ranking`` (N,): the sample with the
    k-th smallest ranking score gets the k-th smallest value (ties kept in sample order). The
    result has exactly the values' distribution (mean, spread, share above 0.5) and the
    ranking's order. Used to give p_clean one source's order and the other's values
    (``TrainConfig.clean_probability`` "posterior_rank" / "posterior_scale")."""
    ranking = np.asarray(ranking)
    values = np.asarray(values)
    if ranking.ndim != 1 or ranking.shape != values.shape:
        raise ValueError(f"ranking and values must be two (N,) arrays, "
                         f"got {ranking.shape} and {values.shape}")
    matched = np.empty_like(values)
    matched[np.argsort(ranking, kind="stable")] = np.sort(values)
    return matched
