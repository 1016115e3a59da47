"""The given label weighed as evidence: the noise model, the temperature, Bayes' rule."""

from __future__ import annotations

import numpy as np
import pytest

from mixnn_core.confident_learning import confident_joint, label_issues
from mixnn_core.label_posterior import (
    _tempered_log_probs,
    evenly_spaced_rows,
    fit_temperature,
    given_label_likelihood,
    given_label_log_likelihood,
    given_label_posterior,
    posterior_clean_probability,
    rank_matched,
    tempered,
    weighed_posterior,
)


def calibrated_problem(seed: int, n: int = 4000, classes: int = 5, wrong: float = 0.4, flip: bool = False,
                       scale: float = 4.0):
    """Calibrated class probabilities (logits normal with sd ``scale``: the argmax is right for
    about 81 % at 4), true classes drawn from them, and given labels drawn from a known noise
    model (symmetric, or a flip to the next class)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, (n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.array([rng.choice(classes, p=row) for row in probs])
    likelihood = np.full((classes, classes), 0.0 if flip else wrong / (classes - 1))
    np.fill_diagonal(likelihood, 1 - wrong)
    if flip:
        likelihood[(np.arange(classes) + 1) % classes, np.arange(classes)] = wrong
    given = np.array([rng.choice(classes, p=likelihood[:, k]) for k in true])
    return given, true, probs, likelihood


def test_given_label_likelihood_by_hand():
    """Columns of joint + 1 normalised: true class 0 was given 0 in 9 of 12 smoothed counts."""
    likelihood = given_label_likelihood(np.array([[8, 1], [2, 9]]))
    np.testing.assert_allclose(likelihood, [[9 / 12, 2 / 12], [3 / 12, 10 / 12]])
    np.testing.assert_allclose(likelihood.sum(axis=0), 1.0)
    # a pair never confused stays possible
    assert given_label_likelihood(np.array([[5, 0], [0, 5]]))[1, 0] == pytest.approx(1 / 7)


def test_given_label_posterior_by_hand():
    """Opinion 0.3 / 0.7, given label 0: 0.3 * 0.75 against 0.7 * 2 / 12, the given label stays."""
    likelihood = np.array([[9 / 12, 2 / 12], [3 / 12, 10 / 12]])
    posterior = given_label_posterior(np.array([0, 1]), np.array([[0.3, 0.7], [0.3, 0.7]]), likelihood)
    np.testing.assert_allclose(posterior[0], np.array([0.225, 0.7 / 6]) / (0.225 + 0.7 / 6))
    np.testing.assert_allclose(posterior[1], np.array([0.075, 0.7 * 10 / 12]) / (0.075 + 0.7 * 10 / 12))
    assert posterior.argmax(axis=1).tolist() == [0, 1]
    # no mass where the given label can come from: the opinion is kept
    never = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(given_label_posterior(np.array([1]), np.array([[1.0, 0.0]]), never), [[1.0, 0.0]])


def test_tempered_keeps_the_argmax_and_sharpens_below_one():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(tempered(probs, 1.0), probs)
    np.testing.assert_allclose(tempered(probs, 0.5)[0], np.array([0.36, 0.09, 0.01]) / 0.46)
    for temperature in (0.1, 0.5, 2.0, 10.0):
        out = tempered(probs, temperature)
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
        assert out.argmax(axis=1).tolist() == [0, 2]
        assert ((out.max(axis=1) > probs.max(axis=1)) == (temperature < 1)).all()


def test_a_reused_row_maximum_tempers_bit_for_bit():
    """fit_temperature reuses each row's largest log-probability across temperatures; divided by
    T > 0 it is the largest tempered logit exactly, so the fit's numbers do not move."""
    rng = np.random.default_rng(3)
    log_probs = np.log(rng.dirichlet(np.full(10, 0.3), size=2000).clip(1e-300, None))
    row_max = log_probs.max(axis=1, keepdims=True)
    for temperature in np.exp(np.linspace(-3.0, 3.0, 41)):
        assert np.array_equal(_tempered_log_probs(log_probs, temperature, row_max),
                              _tempered_log_probs(log_probs, temperature))
    halved = _tempered_log_probs(log_probs, 2.0, row_max * 0.5)
    assert not np.array_equal(halved, _tempered_log_probs(log_probs, 2.0))


@pytest.mark.parametrize("flip", [False, True])
def test_fit_temperature_finds_the_maximum_of_a_dense_scan(flip):
    """The golden-section search (reusing its kept point each step) lands where a scan of 3,001
    log-temperatures finds the largest given-label log-likelihood."""
    given, _, probs, likelihood = calibrated_problem(1, flip=flip)
    distorted = tempered(probs, 0.7)
    scan = np.linspace(-3.0, 3.0, 3001)
    scores = [given_label_log_likelihood(given, tempered(distorted, float(np.exp(x))), likelihood)
              for x in scan]
    fitted = fit_temperature(given, distorted, likelihood)
    assert np.log(fitted) == pytest.approx(scan[int(np.argmax(scores))], abs=0.004)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("true_temperature", [0.4, 1.0, 3.0])
def test_fit_temperature_undoes_a_known_distortion(flip, true_temperature):
    """Predictions distorted by temperature t are fitted back to about 1 / t: the noise model
    explains the given labels best with the calibrated probabilities."""
    given, _, probs, likelihood = calibrated_problem(0, flip=flip)
    fitted = fit_temperature(given, tempered(probs, true_temperature), likelihood)
    assert fitted == pytest.approx(1 / true_temperature, rel=0.15)
    best = given_label_log_likelihood(given, tempered(tempered(probs, true_temperature), fitted), likelihood)
    for other in (fitted / 1.5, fitted * 1.5):
        assert best > given_label_log_likelihood(given, tempered(tempered(probs, true_temperature), other),
                                                 likelihood)


def test_evenly_spaced_rows():
    assert evenly_spaced_rows(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced_rows(3, 5).tolist() == [0, 1, 2]
    rows = evenly_spaced_rows(60_000, 20_000)
    assert rows.size == 20_000 and rows[0] == 0 and rows[-1] == 59_999 and (np.diff(rows) > 0).all()
    with pytest.raises(ValueError, match="at_most"):
        evenly_spaced_rows(10, 0)


@pytest.mark.parametrize("flip", [False, True])
def test_fit_temperature_reads_at_most_max_rows_spread_over_all(flip):
    """Above ``max_rows`` the fit is the fit of the evenly spaced rows; with the samples sorted
    by given label those rows still hold every class, and the distortion is still undone."""
    given, _, probs, likelihood = calibrated_problem(0, flip=flip)
    order = np.argsort(given, kind="stable")
    given, distorted = given[order], tempered(probs, 2.0)[order]
    rows = evenly_spaced_rows(given.size, 2000)
    fitted = fit_temperature(given, distorted, likelihood, max_rows=2000)
    assert fitted == fit_temperature(given[rows], distorted[rows], likelihood)
    assert fitted != fit_temperature(given, distorted, likelihood)
    assert fitted == pytest.approx(0.5, rel=0.2)  # half the rows: a noisier estimate
    assert np.bincount(given[rows], minlength=5).min() > 300


@pytest.mark.parametrize("flip", [False, True])
def test_hedging_predictions_weighed_after_tempering_beat_the_argmax_and_the_count(flip):
    """Predictions flatter than calibrated (as a model trained on mixed soft labels): tempered
    back and weighed with the given label, they recover more true labels than their argmax and
    confident learning's count; under symmetric noise weighing them untempered lets the given
    label overrule right predictions. (P(given | true) is estimated from the predictions, so
    neither rule reaches the Bayes rule with the true noise model: 0.848 / 0.938 here.)"""
    given, true, probs, _ = calibrated_problem(1, flip=flip)
    hedging = tempered(probs, 3.0)
    posterior, temperature = weighed_posterior(given, hedging, hedging)
    assert temperature < 0.5
    weighed = (posterior.argmax(axis=1) == true).mean()
    argmax = (hedging.argmax(axis=1) == true).mean()
    counted = (np.where(label_issues(given, hedging), hedging.argmax(axis=1), given) == true).mean()
    assert weighed > argmax + 0.02
    assert weighed > counted + (0.02 if flip else 0.0)
    if not flip:
        likelihood = given_label_likelihood(confident_joint(given, hedging))
        assert weighed > (given_label_posterior(given, hedging, likelihood).argmax(axis=1) == true).mean() + 0.02


@pytest.mark.parametrize("flip", [False, True])
def test_posterior_clean_probability_keeps_right_labels_the_model_doubts(flip):
    """As p_clean in training: right given labels the (hedging) model does not predict keep a
    high probability of being right, because the given label is evidence; wrong ones get a
    low one. For other labels (the model's argmax) it is the posterior's mass on them."""
    given, true, probs, _ = calibrated_problem(2, wrong=0.3 if flip else 0.2, flip=flip)
    hedging = tempered(probs, 3.0)
    rows = np.arange(len(given))
    p_clean = posterior_clean_probability(given, hedging, given)
    clean = given == true
    doubted = clean & (hedging[rows, given] < hedging.max(axis=1))  # each below 0.5 by the model
    assert doubted.sum() > 400
    assert p_clean[clean].mean() > 0.85 and p_clean[~clean].mean() < 0.2
    assert (p_clean[doubted] > 0.5).mean() > 0.6
    argmax = hedging.argmax(axis=1)
    likelihood = given_label_likelihood(confident_joint(given, hedging))
    posterior = given_label_posterior(given, tempered(hedging, fit_temperature(given, hedging, likelihood)),
                                      likelihood)
    assert np.allclose(posterior_clean_probability(given, hedging, argmax), posterior[rows, argmax])


def test_rank_matched_keeps_the_values_and_takes_the_order():
    """By hand: the smallest score gets the smallest value; ties stay in sample order; the
    result is a permutation of the values that sorts like the ranking."""
    assert np.array_equal(rank_matched(np.array([0.9, 0.1, 0.5]), np.array([0.2, 0.3, 0.7])),
                          [0.7, 0.2, 0.3])
    assert np.array_equal(rank_matched(np.array([1.0, 1.0, 0.0]), np.array([3.0, 1.0, 2.0])), [2.0, 3.0, 1.0])
    rng = np.random.default_rng(0)
    ranking, values = rng.random(500), rng.beta(0.5, 0.5, 500)
    matched = rank_matched(ranking, values)
    assert np.array_equal(np.sort(matched), np.sort(values))
    assert np.all(np.diff(matched[np.argsort(ranking)]) >= 0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="square"):
        given_label_likelihood(np.ones((2, 3)))
    with pytest.raises(ValueError, match="pseudo_count"):
        given_label_likelihood(np.ones((2, 2)), pseudo_count=0)
    with pytest.raises(ValueError, match="class_probs must be"):
        given_label_posterior(np.array([0, 1]), np.ones((3, 2)) / 2, np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="likelihood must be"):
        given_label_posterior(np.array([0, 1]), np.ones((2, 2)) / 2, np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="given labels must lie"):
        fit_temperature(np.array([0, 2]), np.ones((2, 2)) / 2, np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="labels must have shape"):
        posterior_clean_probability(np.array([0, 1]), np.ones((2, 2)) / 2, np.array([0]))
    with pytest.raises(ValueError, match=r"ranking and values must be two \(N,\) arrays"):
        rank_matched(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="temperature must be positive"):
        tempered(np.ones((1, 2)) / 2, 0.0)
