"""The method's formulas against hand-computed values and their defining properties."""

import numpy as np
import pytest
import torch

from mixnn_core.augment import channel_statistics
from mixnn_core.correction import (
    correction_momentum,
    ema_update,
    estimated_noise_share,
    noise_odds_strength,
    suggestion_soft_labels,
)
from mixnn_core.gmm import (
    clean_probability,
    fit_mixture,
    fit_mixture_per_class,
    mixture_input,
    normalize_losses,
)
from mixnn_core.mixing import (
    SELF_WEIGHT_EPSILON,
    mix_batch,
    mixing_weights,
    replacement_weights,
    scaled_neighbor_share,
    smoothed_targets,
    soft_cross_entropy,
)
from mixnn_core.outputs import (
    LABEL_ISSUE_RULE,
    MIXNN_LABEL_ISSUE_RULE,
    MIXNN_LABEL_QUALITY,
    sample_outputs,
)

# -- clean probability -------------------------------------------------------------------------

def test_low_loss_mode_gets_the_higher_clean_probability():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.2, 0.05, 700), rng.normal(2.0, 0.3, 300)])
    p = clean_probability(losses, seed=0)
    assert p.shape == (1000,) and p.min() >= 0 and p.max() <= 1
    assert p[:700].mean() > 0.95 and p[700:].mean() < 0.05


def test_clean_probability_is_monotone_in_the_loss_between_the_modes():
    rng = np.random.default_rng(1)
    losses = np.concatenate([rng.normal(0.1, 0.05, 500), rng.normal(1.0, 0.1, 500)])
    order = np.argsort(losses)
    p = clean_probability(losses)[order]
    middle = (losses[order] > 0.2) & (losses[order] < 0.9)
    assert np.all(np.diff(p[middle]) <= 1e-9)


def test_clean_probability_survives_constant_and_tiny_inputs():
    assert np.array_equal(clean_probability(np.full(10, 3.0)), np.ones(10))
    assert np.array_equal(clean_probability(np.array([1.5])), np.ones(1))


def test_min_max_normalisation_by_hand():
    assert np.allclose(normalize_losses(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="non-finite"):
        normalize_losses(np.array([1.0, np.nan]))


def test_mixture_orders_components_clean_first():
    fit = fit_mixture(np.concatenate([np.full(50, 0.9), np.full(50, 0.1)])
                      + np.random.default_rng(0).normal(0, 0.01, 100))
    assert fit.means[0] < fit.means[1]
    assert abs(sum(fit.weights) - 1) < 1e-9


def test_clean_probability_is_reproducible_under_its_seed():
    losses = np.random.default_rng(3).gamma(2.0, 1.0, 2000)
    assert np.array_equal(clean_probability(losses, seed=5), clean_probability(losses, seed=5))


def test_per_class_mixture_judges_each_sample_within_its_class():
    """A hard class's clean samples have higher losses than an easy class's noisy ones: one
    mixture over all calls the whole hard class noisy, the per-class fit separates both."""
    rng = np.random.default_rng(4)
    easy = np.concatenate([rng.normal(0.05, 0.01, 400), rng.normal(0.40, 0.03, 100)])
    hard = np.concatenate([rng.normal(0.55, 0.03, 400), rng.normal(0.95, 0.02, 100)])
    losses = np.concatenate([easy, hard])
    labels = np.repeat([0, 1], 500)
    truly_clean = np.tile(np.r_[np.ones(400, bool), np.zeros(100, bool)], 2)
    overall = fit_mixture(losses).p_clean
    per_class = fit_mixture_per_class(losses, labels)
    assert overall[500:900].mean() < 0.05  # the hard class's clean samples look noisy
    assert per_class.p_clean[truly_clean].mean() > 0.95
    assert per_class.p_clean[~truly_clean].mean() < 0.05
    assert per_class.means[0] < per_class.means[1] and abs(sum(per_class.weights) - 1) < 1e-9
    with pytest.raises(ValueError, match="shape"):
        fit_mixture_per_class(losses, labels[:10])


# -- mixing weights ----------------------------------------------------------------------------

def test_weights_by_hand():
    p = np.array([0.6, 0.2, 0.2])
    neighbors = np.array([[1], [0], [0]])
    w = mixing_weights(p, neighbors)
    e = SELF_WEIGHT_EPSILON
    assert np.allclose(w[0], [(0.6 + e) / (0.8 + e), 0.2 / (0.8 + e)])
    assert np.allclose(w[1], [(0.2 + e) / (0.8 + e), 0.6 / (0.8 + e)])


def test_weights_rows_sum_to_one_with_k_neighbours():
    rng = np.random.default_rng(0)
    p = rng.random(200)
    neighbors = rng.integers(0, 200, (200, 4))
    w = mixing_weights(p, neighbors)
    assert w.shape == (200, 5)
    assert np.allclose(w.sum(axis=1), 1.0) and w.min() >= 0


def test_clean_sample_keeps_weight_and_noisy_sample_hands_it_over():
    p = np.array([0.99, 0.01])
    w = mixing_weights(p, np.array([[1], [0]]))
    assert w[0, 0] > 0.98  # clean sample, noisy neighbour
    assert w[1, 1] > 0.98  # noisy sample, clean neighbour


def test_all_noisy_set_keeps_its_own_weight():
    w = mixing_weights(np.zeros(3), np.array([[1], [2], [0]]))
    assert np.allclose(w[:, 0], 1.0) and np.allclose(w.sum(axis=1), 1.0)


@pytest.mark.parametrize("weights", [mixing_weights, replacement_weights])
def test_weights_reject_bad_input(weights):
    with pytest.raises(ValueError, match="outside"):
        weights(np.ones(2), np.array([[1], [2]]))
    with pytest.raises(ValueError, match="within"):
        weights(np.array([0.5, 1.5]), np.array([[1], [0]]))


def test_scaled_neighbor_share_hands_the_rest_to_the_sample():
    w = mixing_weights(np.array([0.2, 0.9, 0.6]), np.array([[1], [2], [0]]))
    half = scaled_neighbor_share(w, 0.5)
    assert np.allclose(half[:, 1], 0.5 * w[:, 1]) and np.allclose(half[:, 0], 0.5 + 0.5 * w[:, 0])
    assert np.allclose(half.sum(axis=1), 1.0)
    assert np.allclose(scaled_neighbor_share(w, 1.0), w)
    assert np.allclose(scaled_neighbor_share(w, 0.0), [[1, 0]] * 3)
    with pytest.raises(ValueError, match="strength"):
        scaled_neighbor_share(w, 1.5)


def test_smoothed_targets_spread_the_share_evenly():
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.75, 0.0, 0.0]])
    smoothed = smoothed_targets(targets, 0.2)
    assert torch.allclose(smoothed[0], torch.tensor([0.85, 0.05, 0.05, 0.05]))
    assert torch.allclose(smoothed[1], torch.tensor([0.25, 0.65, 0.05, 0.05]))
    assert torch.allclose(smoothed.sum(dim=1), torch.ones(2))
    assert smoothed_targets(targets, 0.0) is targets
    with pytest.raises(ValueError, match="share"):
        smoothed_targets(targets, 1.0)


def test_replacement_weights_by_hand():
    p = np.array([0.9, 0.8, 0.1, 0.0, 0.0])
    w = replacement_weights(p, np.array([[1, 2], [0, 3], [0, 1], [1, 4], [1, 3]]))
    e = SELF_WEIGHT_EPSILON
    assert np.allclose(w[0], [0.9, 0.1 * (0.8 + e) / (0.9 + 2 * e), 0.1 * (0.1 + e) / (0.9 + 2 * e)])
    assert np.allclose(w[1], [0.8, 0.2 * (0.9 + e) / (0.9 + 2 * e), 0.2 * e / (0.9 + 2 * e)])
    assert np.allclose(w[3], [0.0, 0.8 / 0.8, 0.0], atol=1e-5)
    assert np.allclose(w[4, 1:], [1.0, 0.0], atol=1e-5)
    assert np.allclose(replacement_weights(np.zeros(3), np.array([[1, 2], [0, 2], [0, 1]])),
                       [0.0, 0.5, 0.5])  # nobody clean: the neighbours share equally
    assert np.allclose(w.sum(axis=1), 1.0)


def test_replacement_keeps_clean_samples_whole_and_replaces_noisy_ones():
    p = np.array([0.95, 0.95, 0.02])
    w = replacement_weights(p, np.array([[1], [0], [0]]))
    assert np.isclose(w[0, 0], 0.95)  # the method's weights blend two clean samples evenly:
    assert np.isclose(mixing_weights(p, np.array([[1], [0], [0]]))[0, 0], 0.5)
    assert np.isclose(w[2, 1], 0.98)  # noisy sample, clean neighbour


# -- synthetic batch and loss ------------------------------------------------------------------

def test_mix_batch_is_the_weighted_sum_of_members():
    inputs = torch.tensor([[[[[1.0]]], [[[3.0]]]]])  # B=1, M=2, 1x1x1 images
    labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    weights = torch.tensor([[0.25, 0.75]])
    x, y = mix_batch(inputs, labels, weights)
    assert x.shape == (1, 1, 1, 1) and torch.allclose(x, torch.tensor(2.5))
    assert torch.allclose(y, torch.tensor([[0.25, 0.75]]))


def test_soft_cross_entropy_by_hand_and_equal_to_ce_on_one_hot():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    log_p = torch.log_softmax(logits, dim=1)
    expected = -(0.5 * log_p[0, 0] + 0.5 * log_p[0, 1] + log_p[1, 0]) / 2
    assert torch.allclose(soft_cross_entropy(logits, targets), expected)
    hard = torch.tensor([1, 0])
    one_hot = torch.nn.functional.one_hot(hard, 2).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot),
                          torch.nn.functional.cross_entropy(logits, hard))
    weighted = -(0.5 * log_p[0, 0] + 0.5 * log_p[0, 1]) * 1.5 / 2  # second row weighted 0
    assert torch.allclose(soft_cross_entropy(logits, targets, torch.tensor([1.5, 0.0])), weighted)


# -- label correction --------------------------------------------------------------------------

def test_ema_moves_exactly_ten_percent_toward_the_prediction_at_alpha_0_9():
    t = np.array([[1.0, 0.0]])
    q = np.array([[0.0, 1.0]])
    assert np.allclose(ema_update(t, q, 0.9), [[0.9, 0.1]])
    assert np.allclose(ema_update(t, q, 0.9) - t, 0.1 * (q - t))


def test_ema_keeps_rows_in_the_simplex_and_checks_input():
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(5), 10)
    q = rng.dirichlet(np.ones(5), 10)
    assert np.allclose(ema_update(t, q, 0.7).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        ema_update(t, q, 1.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update(t, q[:, :4])


def test_suggestion_keeps_the_predictions_and_cuts_the_given_labels_share():
    rng = np.random.default_rng(0)
    given = rng.integers(0, 4, 50)
    one_hot = np.eye(4)[given]
    predictions = [rng.dirichlet(np.ones(4), 50) for _ in range(6)]
    soft, alpha = one_hot, 0.9
    for q in predictions:
        soft = ema_update(soft, q, alpha)
    # the corrections' own average: weights (1 - alpha) alpha^(n - k), rescaled to sum to 1
    weights = np.array([(1 - alpha) * alpha ** (len(predictions) - 1 - k) for k in range(len(predictions))])
    averaged = sum(w * q for w, q in zip(weights, predictions)) / weights.sum()
    given_share = alpha ** len(predictions)

    suggestion = suggestion_soft_labels(soft, given, given_share, 0.05)
    np.testing.assert_allclose(suggestion, 0.05 * one_hot + 0.95 * averaged, atol=1e-6)
    np.testing.assert_allclose(suggestion.sum(axis=1), 1.0, atol=1e-6)
    # a wrong given label the predictions disagree with is overturned only in the suggestion
    soft_wrong = ema_update(np.array([[1.0, 0.0]]), np.array([[0.3, 0.7]]), 0.6)  # [0.72, 0.28]
    assert soft_wrong.argmax() == 0
    assert suggestion_soft_labels(soft_wrong, np.array([0]), 0.6, 0.05).argmax() == 1
    # no correction yet, or a share already below the suggestion's: unchanged
    np.testing.assert_array_equal(suggestion_soft_labels(one_hot, given, 1.0, 0.05), one_hot.astype(np.float32))
    np.testing.assert_allclose(suggestion_soft_labels(soft, given, given_share, 0.9), soft, atol=1e-7)



def test_per_sample_momenta_correct_each_row_as_its_own_scalar_would():
    rng = np.random.default_rng(1)
    t, q = rng.dirichlet(np.ones(3), 5), rng.dirichlet(np.ones(3), 5)
    momenta = np.array([1.0, 0.0, 0.9, 0.5, 0.97])
    rows = np.stack([ema_update(t[i:i + 1], q[i:i + 1], momenta[i])[0] for i in range(5)])
    np.testing.assert_allclose(ema_update(t, q, momenta), rows)
    with pytest.raises(ValueError, match="one per sample"):
        ema_update(t, q, momenta[:4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema_update(t, q, np.array([0.5, 0.5, 1.2, 0.5, 0.5]))


def test_correction_momentum_keeps_clean_looking_labels_and_corrects_noisy_ones_fully():
    momentum = correction_momentum(0.9, np.array([1.0, 0.0, 0.5]))
    np.testing.assert_allclose(momentum, [1.0, 0.9, 0.95])  # kept, the method's step, half of it
    with pytest.raises(ValueError, match="p_clean"):
        correction_momentum(0.9, np.array([0.5, 1.5]))
    # strength scales every step: a quarter of the method's step for a label that looks wrong
    np.testing.assert_allclose(correction_momentum(0.9, np.array([1.0, 0.0]), strength=0.25), [1.0, 0.975])
    with pytest.raises(ValueError, match="strength"):
        correction_momentum(0.9, np.array([0.5]), strength=1.5)


def test_estimated_noise_share_is_the_mass_the_mixture_calls_noisy():
    assert estimated_noise_share(np.array([1.0, 0.0, 0.5, 0.5])) == pytest.approx(0.5)
    assert estimated_noise_share(np.ones(7)) == 0.0
    with pytest.raises(ValueError, match="empty"):
        estimated_noise_share(np.array([]))


def test_noise_odds_strength_is_full_from_half_the_labels_noisy():
    assert noise_odds_strength(0.25) == pytest.approx(1 / 3)
    assert noise_odds_strength(0.5) == 1.0
    assert noise_odds_strength(1.0) == 1.0  # every label noisy: capped, not infinite
    assert noise_odds_strength(0.0) == 0.0
    with pytest.raises(ValueError, match="share"):
        noise_odds_strength(1.5)


# -- per-sample outputs ------------------------------------------------------------------------

def test_outputs_score_the_given_label_not_the_corrected_one():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2]], dtype=np.float32)
    out = sample_outputs(np.array([0, 0, 1]), soft, np.array([0.9, 0.1, 0.5]))
    assert out.suggested_label.tolist() == [0, 2, 0]
    assert np.allclose(out.suggested_confidence, [0.7, 0.6, 0.4])
    assert np.allclose(out.label_quality, [0.7, 0.1, 0.4])
    # flagged when the given label's mass is below the best class's (a tie is not flagged)
    assert out.is_label_issue.tolist() == [False, True, False]


def test_a_suggestion_that_keeps_the_given_label_stays_flagged():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.7, 0.2]], dtype=np.float32)
    given = np.array([0, 0, 0])
    out = sample_outputs(given, soft, np.ones(3), suggested_labels=np.array([0, 2, 0]))
    assert out.suggested_label.tolist() == [0, 2, 0]
    assert out.is_label_issue.tolist() == [False, True, True]  # sample 2: for review, not changed
    assert np.allclose(out.suggested_confidence, [0.7, 0.6, 0.1])  # the soft label's mass on the suggestion
    assert np.allclose(out.label_quality, [0.7, 0.1, 0.1])  # the soft label's own figure
    assert sample_outputs(given, soft, np.ones(3)).suggested_label.tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="suggested_labels"):
        sample_outputs(given, soft, np.ones(3), suggested_labels=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"suggested_labels must lie in \[0, 3\)"):
        sample_outputs(given, soft, np.ones(3), suggested_labels=np.array([0, 3, 0]))


def test_with_final_predictions_label_quality_is_the_models_mass_on_the_given_label():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.7, 0.2]], dtype=np.float32)
    given = np.zeros(3, dtype=np.int64)
    probs = np.array([[0.9, 0.05, 0.05], [0.02, 0.08, 0.9], [0.8, 0.1, 0.1]])
    out = sample_outputs(given, soft, np.ones(3), final_probs=probs)
    assert np.allclose(out.label_quality, [0.9, 0.02, 0.8])  # the final model's, not the soft label's
    assert out.label_quality_rule == MIXNN_LABEL_QUALITY
    assert out.is_label_issue.tolist() == [False, True, True]  # flags still the soft label's argmax rule
    with pytest.raises(ValueError, match="final_probs"):
        sample_outputs(given, soft, np.ones(3), final_probs=probs[:2])


def test_with_probabilities_of_being_wrong_the_flags_start_at_the_expected_f1_cut():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    given = np.zeros(4, dtype=np.int64)
    wrong = np.array([0.0, 0.9, 0.1, 0.8])  # expected F1 of the top 1, 2, 3, 4: 0.64, 0.89, 0.75, 0.62
    out = sample_outputs(given, soft, np.ones(4), wrong_probability=wrong)
    assert out.flag_cut == 0.8 and out.is_label_issue.tolist() == [False, True, False, True]
    assert out.label_issue_rule == MIXNN_LABEL_ISSUE_RULE != LABEL_ISSUE_RULE
    assert out.suggested_label.tolist() == [0, 2, 1, 0]  # suggestions do not depend on the flags
    given_cut = sample_outputs(given, soft, np.ones(4), wrong_probability=wrong, cut=0.05)
    assert given_cut.flag_cut == 0.05 and given_cut.is_label_issue.tolist() == [False, True, True, True]
    assert sample_outputs(given, soft, np.ones(4)).flag_cut is None
    with pytest.raises(ValueError, match="wrong_probability must have shape"):
        sample_outputs(given, soft, np.ones(4), wrong_probability=wrong[:3])


def test_channel_statistics_equal_the_float_computation_per_channel():
    images = np.random.default_rng(3).integers(0, 256, (40, 3, 6, 5), dtype=np.uint8)
    images[:, 1] //= 4  # channels with different statistics
    mean, std = channel_statistics(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    assert channel_statistics(np.full((2, 1, 3, 3), 7, dtype=np.uint8))[1] == [1e-3]  # flat: floored


def test_log_scale_keeps_a_few_confident_mistakes_from_hiding_the_noise():
    """40 % noisy cross-entropy losses with 1 % confident mistakes (losses 10-20): on the linear
    scale the second component fits the tail alone; on the log scale it finds the noisy labels."""
    rng = np.random.default_rng(0)
    n = 20000
    noisy = rng.random(n) < 0.4
    losses = -np.log(np.where(noisy, rng.beta(1, 4, n), rng.beta(3, 2, n)))
    tail = rng.choice(n, n // 100, replace=False)
    losses[tail] = rng.uniform(10, 20, tail.size)
    linear = fit_mixture(mixture_input(losses, "linear")).p_clean
    logged = fit_mixture(mixture_input(losses, "log")).p_clean
    assert 1 - linear.mean() < 0.1 and 0.3 < 1 - logged.mean() < 0.5
    assert logged[noisy].mean() < 0.5 < logged[~noisy].mean()
    assert np.array_equal(mixture_input(losses), normalize_losses(losses))
    assert np.allclose(mixture_input(losses, "log"), normalize_losses(np.log1p(losses)))
    with pytest.raises(ValueError, match="scale must be one of"):
        mixture_input(losses, "sqrt")
    with pytest.raises(ValueError, match="losses >= 0"):
        mixture_input(-losses, "log")
