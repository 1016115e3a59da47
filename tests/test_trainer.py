"""The trainer: models, schedule presets, exact resume, and the method end to end on digits."""

import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mixnn_core.augment import normalize
from mixnn_core.confident_learning import SYMMETRIC_NOISE_CONCENTRATION, label_issues
from mixnn_core.config import (
    FIELDS_CE_IGNORES,
    RESIDUAL_GIVEN_LABEL_WEIGHT,
    TrainConfig,
    cpu_preset,
    paper_preset,
)
from mixnn_core.correction import noise_odds_strength
from mixnn_core.gmm import mixture_input, normalize_losses
from mixnn_core.label_posterior import posterior_clean_probability, weighed_posterior
from mixnn_core.metrics import label_quality_metrics
from mixnn_core.models import build_model, resolve_model_name
from mixnn_core.noise import inject_noise
from mixnn_core.trainer import Trainer, TrainingDiverged


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = np.round(data.images * 255 / 16).astype(np.uint8)[:, None]
    return images, data.target.astype(np.int64)


@pytest.mark.parametrize("name,shape", [
    ("small_cnn", (1, 8, 8)), ("small_cnn", (1, 28, 28)), ("small_cnn", (3, 32, 32)),
    ("preact_resnet18", (3, 32, 32)), ("preact_resnet34", (1, 28, 28)), ("resnet18", (3, 64, 64)),
    ("auto", (3, 96, 96)),
])
def test_models_give_logits_and_penultimate_features(name, shape):
    model = build_model(name, shape, 7).eval()
    x = torch.randn(2, *shape)
    features = model.features(x)
    assert features.shape == (2, model.feature_dim)
    assert torch.allclose(model(x), model.classifier(features))
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize("name,shape", [("small_cnn", (1, 28, 28)), ("preact_resnet18", (3, 32, 32)),
                                        ("resnet18", (3, 64, 64))])
def test_inference_copy_computes_the_same_function_and_leaves_the_model_alone(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 5)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # BatchNorm statistics away from their initial 0 / 1
            model(torch.randn(16, *shape) * 2 + 1)
    model.eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = model.for_inference()
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.allclose(folded.features(x), model.features(x), atol=1e-4, rtol=1e-4)
        assert torch.allclose(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # some were folded
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


@pytest.mark.parametrize("shape,expected", [
    ((1, 8, 8), "small_cnn"), ((1, 28, 28), "small_cnn"), ((1, 32, 32), "small_cnn"),
    ((3, 28, 28), "small_cnn"), ((3, 32, 32), "resnet18"), ((1, 33, 33), "resnet18"), ((3, 96, 96), "resnet18"),
])
def test_auto_model_is_resnet18_for_colour_images_from_32_pixels_and_all_larger_ones(shape, expected):
    assert resolve_model_name("auto", shape) == expected
    assert resolve_model_name("small_cnn", shape) == "small_cnn"


def test_unknown_model_and_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", (1, 8, 8), 3)
    with pytest.raises(ValueError, match="channels"):
        build_model("small_cnn", (4, 8, 8), 3)


def test_cpu_preset_scales_the_schedule_to_the_budget():
    short, long = cpu_preset(10), cpu_preset(100)
    assert (short.warmup_epochs, long.warmup_epochs) == (2, 20)
    for config in (short, long):
        corrections = sum(config.corrects_labels(e) for e in range(config.epochs))
        assert corrections == config.epochs - config.warmup_epochs
        assert config.alpha ** corrections == pytest.approx(RESIDUAL_GIVEN_LABEL_WEIGHT, rel=0.01)
        assert config.given_label_share(config.epochs) == config.alpha ** corrections
        assert config.given_label_share(config.warmup_epochs) == 1.0  # no correction in warm-up


def test_consolidation_takes_the_last_fifth_of_the_cpu_budget():
    """Warm-up, mixing, then consolidation on un-mixed samples; mixture fits and corrections in
    both of the last two phases, neighbours only while mixing; the paper preset has none."""
    config = cpu_preset(20)
    assert [config.phase(e) for e in range(20)] == ["warmup"] * 4 + ["mixnn"] * 12 + ["consolidate"] * 4
    assert [e for e in range(20) if config.fits_mixture(e)] == list(range(4, 20))
    assert sum(config.corrects_labels(e) for e in range(20)) == 16
    assert cpu_preset(100).consolidation_epochs == 20 and paper_preset().consolidation_epochs == 0
    assert "consolidate" not in {paper_preset().phase(e) for e in range(300)}
    assert cpu_preset(20, method="ce").phase(19) == "ce"
    with pytest.raises(ValueError, match="consolidation_epochs must be >= 0"):
        TrainConfig(consolidation_epochs=-1)


def test_consolidation_epoch_trains_unmixed_and_ignores_samples_with_clean_probability_0(digits):
    """With every p_clean 1 a consolidation epoch is a plain epoch on the soft labels (bit for
    bit the ce method's on one-hot labels); a sample with p_clean 0 does not move the model."""
    images, labels = digits

    def trained(config, p_clean=None, soft_labels=None, mixture_p_clean=None, noise_strength=None):
        trainer = Trainer(config, images, labels, 10)
        trainer.epoch = 4  # a consolidation epoch of cpu_preset(5) (warm-up 1, consolidation 1)
        trainer.noise_strength = noise_strength
        if p_clean is not None:
            trainer.p_clean = p_clean
        if mixture_p_clean is not None:
            trainer.mixture_p_clean = mixture_p_clean
        if soft_labels is not None:
            trainer.soft_labels = soft_labels
        row = trainer.train_epoch()
        return row, parameters(trainer)

    by_p_clean = cpu_preset(5, consolidation_weights="clean_probability")
    ones = np.ones(len(labels))
    row, consolidated = trained(by_p_clean, ones)
    assert row["phase"] == "consolidate"
    assert torch.equal(consolidated, trained(cpu_preset(5, method="ce"))[1])
    half = np.where(np.arange(len(labels)) % 2 == 0, 1.0, 0.0)
    _, weighted = trained(by_p_clean, half)
    assert not torch.equal(weighted, consolidated)
    rolled = np.eye(10, dtype=np.float32)[labels]
    rolled[half == 0] = np.roll(rolled[half == 0], 3, axis=1)  # other labels where p_clean is 0
    assert torch.allclose(trained(by_p_clean, half, rolled)[1], weighted, atol=1e-6)
    # consolidation_weights="kept": every sample with p_clean > 0 weighs 1, those with 0 nothing
    graded = np.where(half == 1, 0.3 + 0.7 * (np.arange(len(labels)) % 4 == 0), 0.0)
    kept = cpu_preset(5, consolidation_weights="kept")
    assert torch.allclose(trained(kept, graded)[1], weighted, atol=1e-6)
    assert not torch.allclose(trained(by_p_clean, graded)[1], weighted, atol=1e-6)
    assert torch.equal(trained(kept, ones)[1], consolidated)
    # consolidation_weights="estimated_noise" (the default): p_clean + (1 - s)(1 - p_clean) where
    # p_clean > 0, s the run's noise strength: p_clean itself at s = 1, kept's weights at s = 0
    following = cpu_preset(5)
    assert following.consolidation_weights == "estimated_noise"
    with pytest.raises(RuntimeError, match="first mixture fit"):
        trained(following, graded)
    assert torch.equal(trained(following, graded, noise_strength=1.0)[1], trained(by_p_clean, graded)[1])
    assert torch.allclose(trained(following, graded, noise_strength=0.0)[1], weighted, atol=1e-6)
    halfway = trained(following, graded, noise_strength=0.5)[1]
    assert not torch.allclose(halfway, weighted, atol=1e-6)
    by_hand = np.where(graded > 0, 0.5 + 0.5 * graded, 0.0)  # what "clean_probability" trains on these
    assert torch.allclose(trained(by_p_clean, by_hand)[1], halfway, atol=1e-6)
    # consolidation_weights="mixture": the loss mixture's own p_clean, whatever p_clean says
    by_mixture = cpu_preset(5, consolidation_weights="mixture")
    assert torch.allclose(trained(by_mixture, ones, mixture_p_clean=half)[1], weighted, atol=1e-6)
    assert torch.equal(trained(by_mixture, half, mixture_p_clean=ones)[1], consolidated)


def test_eased_consolidation_mixes_less_each_epoch_and_ends_unmixed(digits):
    config = cpu_preset(20, consolidation_mixing="eased")
    assert [config.consolidation_neighbor_share(e) for e in range(16, 20)] == [0.75, 0.5, 0.25, 0.0]
    assert [e for e in range(20) if config.searches_neighbors(e)] == list(range(4, 19))
    assert [e for e in range(20) if cpu_preset(20).searches_neighbors(e)] == list(range(4, 16))
    assert "consolidation_mixing" in FIELDS_CE_IGNORES
    with pytest.raises(ValueError, match="consolidation_mixing must be one of"):
        cpu_preset(20, consolidation_mixing="linear")
    images, labels = digits

    def trained(config, epoch, neighbors=None):
        trainer = Trainer(config, images, labels, 10)
        trainer.epoch, trainer.p_clean, trainer.noise_strength = epoch, np.ones(len(labels)), 1.0
        row = trainer.train_epoch(neighbors)
        return row, parameters(trainer)

    neighbors = np.roll(np.arange(len(labels)), 1)[:, None]
    unmixed = cpu_preset(5, consolidation_epochs=2)  # epochs 3 and 4 consolidate
    eased = unmixed.with_changes(consolidation_mixing="eased")  # neighbour share 1/2 in epoch 3, 0 in 4
    with pytest.raises(ValueError, match="mixes with neighbours"):
        trained(eased, 3)
    row, mixed = trained(eased, 3, neighbors)
    assert row["phase"] == "consolidate" and not torch.equal(mixed, trained(unmixed, 3)[1])
    assert torch.equal(trained(eased, 4, neighbors)[1], trained(unmixed, 4)[1])


def test_mixture_consolidation_weights_are_the_gated_mixture_under_the_floor(digits):
    """Under clean_probability="posterior_scale_floor" a consolidation epoch's fit raises some
    p_clean above the mixture's; consolidation_weights="mixture" weighs the losses by the
    mixture's own values, 0 where the gate set p_clean to 0."""
    images, labels = digits
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(labels)) < 0.3, rng.integers(0, 10, len(labels)), labels)
    trainer = Trainer(cpu_preset(5, consolidation_weights="mixture", gate_under="any"), images, noisy, 10)
    trainer.epoch = 4
    confidence = rng.uniform(0.3, 0.95, len(labels))
    probs = np.repeat(((1 - confidence) / 9)[:, None], 10, axis=1)
    probs[np.arange(len(labels)), labels] = confidence
    losses = -np.log(probs[np.arange(len(labels)), noisy]) + rng.normal(0.0, 0.5, len(labels)).clip(0, None)
    trainer.soft_labels = trainer.uniform_soft_labels = probs.astype(np.float32)  # corrected: the gate acts
    fit = trainer.fit_clean_probability(losses, probs)
    weights = trainer.consolidation_loss_weights()
    assert trainer.n_gated > 0 and (weights[trainer.p_clean == 0] == 0).all()
    assert np.array_equal(weights, np.where(trainer.p_clean == 0, 0.0, fit.p_clean))
    assert (trainer.p_clean > weights + 1e-6).sum() > 0


def test_label_smoothing_trains_on_the_smoothed_targets(digits):
    """An epoch with label_smoothing s trains bit-near the model of one on (1 - s) one-hot + s / C."""
    images, labels = digits

    def one_epoch(config, soft_labels=None):
        trainer = Trainer(config, images, labels, 10)
        if soft_labels is not None:
            trainer.soft_labels = soft_labels
        trainer.train_epoch()
        return parameters(trainer)

    smoothed = one_epoch(cpu_preset(5, method="ce", label_smoothing=0.2))
    assert not torch.allclose(smoothed, one_epoch(cpu_preset(5, method="ce")), atol=1e-4)
    by_hand = (0.8 * np.eye(10)[labels] + 0.02).astype(np.float32)
    assert torch.allclose(one_epoch(cpu_preset(5, method="ce"), by_hand), smoothed, atol=1e-5)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        TrainConfig(label_smoothing=1.0)


def contradicting_predictions(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes that contradict every fourth label: at random over the other classes
    (noise that reads as symmetric), or always the next class (a flip)."""
    contradicted = np.arange(len(labels)) % 4 == 0
    at_random = np.where(contradicted, (labels + rng.integers(1, 10, len(labels))) % 10, labels)
    return at_random, np.where(contradicted, (labels + 1) % 10, labels)


def fitted_on_readings(config: TrainConfig, digits, losses: np.ndarray, hedging: np.ndarray,
                       *readings: np.ndarray) -> Trainer:
    """A trainer after one mixture fit on ``losses`` per entry of ``readings``, an epoch apart,
    each with predictions 0.6 on those classes and 0.4 spread as ``hedging``."""
    images, labels = digits
    trainer = Trainer(config, images, labels, 10)
    for number, predicted in enumerate(readings):
        trainer.epoch += int(number > 0)
        trainer.fit_clean_probability(losses, 0.6 * np.eye(10, dtype=np.float32)[predicted] + 0.4 * hedging)
    return trainer


def test_symmetric_noise_smoothing_follows_the_first_fits_reading_of_the_noise(digits, tmp_path):
    """``symmetric_noise_smoothing`` s: no smoothing before the first fit; after it, s where
    that fit's predictions put the labels they contradict evenly over the other classes, none
    where they put them in one other class; on top of ``label_smoothing``; kept by a
    checkpoint; and an epoch so smoothed trains like one with ``label_smoothing`` s."""
    images, labels = digits
    rng = np.random.default_rng(0)
    losses = rng.random(len(labels))
    at_random, to_next = contradicting_predictions(labels, rng)

    def first_fit(predicted, **options):
        trainer = Trainer(cpu_preset(10, symmetric_noise_smoothing=0.2, **options), images, labels, 10)
        assert trainer.target_smoothing() == options.get("label_smoothing", 0.0)
        trainer.fit_clean_probability(losses, 0.9 * np.eye(10, dtype=np.float32)[predicted] + 0.01)
        return trainer

    symmetric = first_fit(at_random)
    assert symmetric.noise_concentration < 0.3 and symmetric.target_smoothing() == pytest.approx(0.2)
    flipped = first_fit(to_next)
    assert flipped.noise_concentration == pytest.approx(8 / 9) and flipped.target_smoothing() == 0.0
    assert first_fit(at_random, label_smoothing=0.1).target_smoothing() == pytest.approx(1 - 0.9 * 0.8)
    assert first_fit(to_next, label_smoothing=0.1).target_smoothing() == pytest.approx(0.1)
    later = symmetric.noise_concentration
    symmetric.epoch += 1
    symmetric.fit_clean_probability(losses, 0.9 * np.eye(10, dtype=np.float32)[to_next] + 0.01)
    assert symmetric.noise_concentration == later  # the first fit's, as the noise strength
    resumed = Trainer(cpu_preset(10, symmetric_noise_smoothing=0.2), images, labels, 10)
    resumed.load(symmetric.save(tmp_path / "symmetric.pt"))
    assert resumed.noise_concentration == later and resumed.target_smoothing() == pytest.approx(0.2)

    read_symmetric = Trainer(cpu_preset(10, symmetric_noise_smoothing=0.2), images, labels, 10)
    read_symmetric.noise_concentration = later
    read_symmetric.train_epoch()
    smoothed = Trainer(cpu_preset(10, label_smoothing=0.2), images, labels, 10)
    smoothed.train_epoch()
    assert torch.allclose(parameters(read_symmetric), parameters(smoothed), atol=1e-6)
    unchanged = Trainer(cpu_preset(10, label_smoothing=0.1), images, labels, 10)
    unchanged.noise_concentration = later
    assert unchanged.target_smoothing() == 0.1  # exactly: runs without the option train as before it
    with pytest.raises(ValueError, match="symmetric_noise_smoothing must be in"):
        TrainConfig(symmetric_noise_smoothing=-0.1)
    with pytest.raises(ValueError, match="symmetric_noise_smoothing reads the first fit's predictions"):
        Trainer(cpu_preset(10, symmetric_noise_smoothing=0.2), images, labels, 10).fit_clean_probability(losses)


def test_symmetric_floor_is_the_floor_under_spread_noise_and_the_mixture_under_flips(digits):
    """clean_probability="posterior_scale_floor_symmetric": p_clean bit for bit the floor's where
    the first fit read the noise as spread over the classes, the mixture's where it read flips,
    in that fit and the later ones."""
    labels = digits[1]
    rng = np.random.default_rng(1)
    losses = rng.random(len(labels))
    at_random, to_next = contradicting_predictions(labels, rng)
    hedging = rng.dirichlet(np.full(10, 0.5), len(labels)).astype(np.float32)

    def p_clean(source, *readings):  # a second reading: a later fit whose predictions read the other way
        return fitted_on_readings(cpu_preset(10, clean_probability=source), digits, losses, hedging,
                                  *readings).p_clean

    assert not np.array_equal(p_clean("mixture", at_random), p_clean("posterior_scale_floor", at_random))
    assert np.array_equal(p_clean("posterior_scale_floor_symmetric", at_random),
                          p_clean("posterior_scale_floor", at_random))
    assert np.array_equal(p_clean("posterior_scale_floor_symmetric", to_next), p_clean("mixture", to_next))
    assert np.array_equal(p_clean("posterior_scale_floor_symmetric", at_random, to_next),
                          p_clean("posterior_scale_floor", at_random, to_next))
    assert np.array_equal(p_clean("posterior_scale_floor_symmetric", to_next, at_random),
                          p_clean("mixture", to_next, at_random))


def test_mixture_symmetric_noise_estimate_is_the_mixtures_under_spread_noise_and_0_under_flips(digits):
    """noise_estimate="mixture_symmetric": the noise strength is the mixture's where the first
    fit's predictions read the noise as spread over the classes and 0 where they read flips; a
    later fit that reads the other way keeps it; a first fit without predictions reads nothing and
    keeps the mixture's, as "mixture" does."""
    images, labels = digits
    rng = np.random.default_rng(1)
    losses = np.where(np.arange(len(labels)) % 4 == 0, 5.0, 1.0) + rng.normal(0, 0.1, len(labels))
    at_random, to_next = contradicting_predictions(labels, rng)
    hedging = rng.dirichlet(np.full(10, 0.5), len(labels)).astype(np.float32)

    def strength(estimate, *readings):
        return fitted_on_readings(cpu_preset(10, noise_estimate=estimate), digits, losses, hedging,
                                  *readings).noise_strength

    mixture = strength("mixture", at_random)
    assert 0.25 < mixture < 0.4 and strength("mixture", to_next) == mixture  # odds of 1/4 noisy
    assert strength("mixture_symmetric", at_random) == mixture
    assert strength("mixture_symmetric", to_next) == 0.0
    assert strength("mixture_symmetric", to_next, at_random) == 0.0
    assert strength("mixture_symmetric", at_random, to_next) == mixture
    unread = Trainer(cpu_preset(10, noise_estimate="mixture_symmetric", clean_probability="mixture"),
                     images, labels, 10)
    unread.fit_clean_probability(losses)
    assert unread.noise_read_as() is None and unread.noise_strength == mixture


def test_posterior_clean_probability_replaces_the_mixtures_but_not_its_noise_strength(digits):
    """clean_probability="posterior": p_clean is the posterior's mass on each sample's loss
    label (corrected labels included), the gate still applies, and the noise strength is the
    mixture's reading, as without the option; "posterior_rank": the mixture's p_clean values
    in the posterior's order; "posterior_scale": the posterior's values in the mixture's;
    "posterior_scale_floor": the higher of posterior_scale's value and the mixture's."""
    images, labels = digits
    noisy, _ = inject_noise(labels, 10, "symmetric", 0.4, seed=0)
    rng = np.random.default_rng(0)
    losses = rng.random(len(noisy))
    probs = rng.dirichlet(np.ones(10), len(noisy)).astype(np.float32)
    mixture = Trainer(cpu_preset(10, clean_probability="mixture"), images, noisy, 10)
    posterior = Trainer(cpu_preset(10, clean_probability="posterior", gate_under="any"), images, noisy, 10)
    ranked = Trainer(cpu_preset(10, clean_probability="posterior_rank"), images, noisy, 10)
    scaled = Trainer(cpu_preset(10, clean_probability="posterior_scale"), images, noisy, 10)
    floored = Trainer(cpu_preset(10, clean_probability="posterior_scale_floor"), images, noisy, 10)
    for trainer in (mixture, posterior, ranked, scaled, floored):
        trainer.epoch = 2  # a mixing epoch: no gate
        trainer.soft_labels = np.roll(trainer.soft_labels, 1, axis=0)  # loss labels differ from given
        fit = trainer.fit_clean_probability(losses, probs)
    assert all(trainer.noise_strength == mixture.noise_strength
               for trainer in (posterior, ranked, scaled, floored))
    assert np.array_equal(mixture.p_clean, fit.p_clean)
    expected = posterior_clean_probability(noisy, probs, posterior.loss_labels())
    assert not np.array_equal(posterior.loss_labels(), noisy)
    assert np.allclose(posterior.p_clean, expected) and not np.allclose(expected, fit.p_clean)
    # posterior_rank: the mixture's values, in the posterior's order
    assert np.array_equal(np.sort(ranked.p_clean), np.sort(fit.p_clean))
    assert not np.array_equal(ranked.p_clean, fit.p_clean)
    assert np.all(np.diff(ranked.p_clean[np.argsort(expected, kind="stable")]) >= 0)
    # posterior_scale: the posterior's values, in the mixture's order
    assert np.array_equal(np.sort(scaled.p_clean), np.sort(expected))
    assert not np.array_equal(scaled.p_clean, expected)
    assert np.all(np.diff(scaled.p_clean[np.argsort(fit.p_clean, kind="stable")]) >= 0)
    # posterior_scale_floor: posterior_scale's value where it is the higher, else the mixture's
    above = scaled.p_clean > fit.p_clean
    assert above.any() and not above.all()  # the floor matters for some samples and not for others
    assert np.array_equal(floored.p_clean[above], scaled.p_clean[above])
    assert np.array_equal(floored.p_clean[~above], fit.p_clean[~above])
    posterior.epoch = 9  # a consolidation epoch: gated where the suggestion changes the label
    posterior.uniform_soft_labels = posterior.soft_labels
    posterior.fit_clean_probability(losses, probs)
    changed = posterior.outputs().suggested_label != noisy
    assert changed.any() and np.all(posterior.p_clean[changed] == 0)
    ungated = posterior_clean_probability(noisy, probs, posterior.loss_labels())
    assert np.allclose(posterior.p_clean[~changed], ungated[~changed])
    with pytest.raises(ValueError, match='clean_probability="posterior" reads'):
        posterior.fit_clean_probability(losses)
    with pytest.raises(ValueError, match='clean_probability="posterior_rank" reads'):
        ranked.fit_clean_probability(losses)
    with pytest.raises(ValueError, match="clean_probability must be one of"):
        TrainConfig(clean_probability="loss")


def gate_fit(digits, concentration=None, **options):
    """A Trainer (cpu_preset(5), ``options``) after the mixture fit of its consolidation epoch 4,
    with every fifth sample's suggestion soft label moved half-way to the next class, and that fit;
    ``concentration``: the first fit's reading of the noise, as if an earlier fit had made it."""
    images, labels = digits
    moved = np.arange(len(labels)) % 5 == 0
    uniform = np.eye(10, dtype=np.float32)[labels]
    uniform[moved] = 0.5 * uniform[moved] + 0.5 * np.roll(uniform[moved], 1, axis=1)
    losses = np.random.default_rng(0).gamma(1.0, size=len(labels))
    trainer = Trainer(cpu_preset(5, clean_probability="mixture", **options), images, labels, 10)
    trainer.epoch = 4  # three corrections done: the given label keeps alpha^3 of the soft label
    trainer.uniform_soft_labels = uniform
    if concentration is not None:
        trainer.noise_strength, trainer.noise_concentration = 1.0, concentration
    return trainer, trainer.fit_clean_probability(losses)


def test_gate_sets_clean_probability_0_where_the_outputs_would_change_the_label(digits):
    """``gate_clean_probability``: after the mixture fit, p_clean is 0 exactly where the outputs
    suggest another label and the mixture's posterior elsewhere; without it, or before
    ``gate_start``, the posterior."""
    _, labels = digits
    moved = np.arange(len(labels)) % 5 == 0

    def fitted(gate, gate_start=None):
        return gate_fit(digits, gate_clean_probability=gate, gate_start=gate_start)

    trainer, fit = fitted(True)  # cpu_preset(5): epoch 4 is the consolidation epoch
    changed = trainer.outputs().suggested_label != labels
    assert changed.sum() > moved.sum() / 2 and not changed[~moved].any()
    assert 0 < fit.p_clean[changed].min()  # the fit itself is the mixture's
    assert np.array_equal(trainer.p_clean, np.where(changed, 0.0, fit.p_clean))
    ungated, ungated_fit = fitted(False)
    assert np.array_equal(ungated.p_clean, ungated_fit.p_clean)
    assert np.array_equal(ungated_fit.p_clean, fit.p_clean)
    not_yet, not_yet_fit = fitted(True, gate_start=5)  # epoch 4's fit comes before the gate
    assert np.array_equal(not_yet.p_clean, not_yet_fit.p_clean)
    from_now, _ = fitted(True, gate_start=4)
    assert np.array_equal(from_now.p_clean, trainer.p_clean)


def test_gate_under_flips_leaves_out_the_gate_where_the_first_fit_read_symmetric_noise(digits):
    """``gate_under="flips"``: no gate once the first fit read the noise as spread over the classes
    (noise_concentration below SYMMETRIC_NOISE_CONCENTRATION), the same gate as ``"any"`` once it
    read flips or while it has read nothing."""
    symmetric, fit = gate_fit(digits, 0.2, gate_under="flips")
    assert symmetric.n_gated == 0 and np.array_equal(symmetric.p_clean, fit.p_clean)
    gated, _ = gate_fit(digits, 0.2, gate_under="any")
    assert gated.n_gated > 0 and not np.array_equal(gated.p_clean, fit.p_clean)
    for concentration in (SYMMETRIC_NOISE_CONCENTRATION, None):
        flips, _ = gate_fit(digits, concentration, gate_under="flips")
        assert flips.n_gated == gated.n_gated and np.array_equal(flips.p_clean, gated.p_clean)
    with pytest.raises(ValueError, match="gate_under must be one of"):
        cpu_preset(20, gate_under="symmetric")


def test_gate_starts_with_the_consolidation_epochs_unless_told_otherwise():
    gated = cpu_preset(20, gate_clean_probability=True)  # consolidation: epochs 16-19
    assert [e for e in range(20) if gated.gates_clean_probability(e)] == [16, 17, 18, 19]
    assert cpu_preset(20, gate_clean_probability=True, gate_start=0).gates_clean_probability(0)
    assert not any(cpu_preset(20, gate_clean_probability=False).gates_clean_probability(e) for e in range(20))
    assert not any(paper_preset(gate_clean_probability=True).gates_clean_probability(e) for e in range(300))


def test_paper_preset_keeps_the_reference_schedule():
    config = paper_preset()
    assert (config.epochs, config.warmup_epochs, config.alpha, config.num_neighbors) == (300, 10, 0.9, 1)
    assert (config.correction_rate, config.mixing_strength, config.clean_probability) == (
        "uniform", "full", "mixture")  # the method as published
    assert not config.gate_clean_probability
    assert [e for e in range(config.epochs) if config.corrects_labels(e)][:3] == [60, 70, 80]
    assert config.learning_rate(0) == pytest.approx(0.02)
    assert config.learning_rate(10) == pytest.approx(0.02)  # warm restart every 10 epochs
    assert config.learning_rate(9.999) == pytest.approx(0.001, abs=1e-5)


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="dividemix")
    with pytest.raises(ValueError, match="unknown configuration fields"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="mixture_loss"):
        TrainConfig(mixture_loss="clean")
    with pytest.raises(ValueError, match="correction_rate"):
        TrainConfig(correction_rate="fast")
    with pytest.raises(ValueError, match="neighbor_scope must be one of"):
        TrainConfig(neighbor_scope="global")
    with pytest.raises(ValueError, match="mixture_scale must be one of"):
        TrainConfig(mixture_scale="sqrt")
    with pytest.raises(ValueError, match="mixing_strength must be one of"):
        TrainConfig(mixing_strength="half")
    with pytest.raises(ValueError, match="gate_start must be None or >= 0"):
        TrainConfig(gate_start=-1)


@pytest.mark.parametrize("field, value, message", [
    ("lr", "0.1", r"lr must be a number, got '0.1' \(str\)"),
    ("lr", True, r"lr must be a number, got True \(bool\)"),
    ("alpha", None, r"alpha must be a number, got None"),
    ("num_neighbors", 1.5, r"num_neighbors must be an integer, got 1.5 \(float\)"),
    ("gate_start", "3", r"gate_start must be an integer or null, got '3'"),
    ("hflip", "yes", r"hflip must be true or false, got 'yes'"),
    ("model", 5, r"model must be a string, got 5 \(int\)"),
])
def test_a_value_of_the_wrong_type_is_a_clear_error_naming_its_field(field, value, message):
    # as a deployment's train_options or a checkpoint's recorded configuration would pass it
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({field: value})
    with pytest.raises(ValueError, match=message):
        cpu_preset(20, **{field: value})


def test_numbers_of_any_numeric_type_are_accepted_where_they_fit():
    config = TrainConfig(lr=1, alpha=np.float32(0.9), num_neighbors=np.int64(2), gate_start=None)
    assert (config.lr, config.num_neighbors) == (1, 2)
    with pytest.raises(ValueError, match="epochs must be an integer, got 'ten'"):
        cpu_preset("ten")


def test_noisy_probability_correction_keeps_clean_looking_labels(digits, tmp_path):
    """correction_rate="noisy_probability": a training label with p_clean 1 is not moved, one
    with p_clean 0 moves by the method's step 1 - alpha; the suggestions are read from the
    method's uniform correction whatever the rate."""
    images, labels = digits
    config = cpu_preset(10, correction_rate="noisy_probability")
    trainer = Trainer(config, images, labels, 10)
    uniform = Trainer(cpu_preset(10, correction_rate="uniform"), images, labels, 10)
    p_clean = np.r_[1.0, 0.0, 0.5, np.ones(len(labels) - 3)]
    probs = np.eye(10, dtype=np.float32)[(labels + 1) % 10]  # every prediction another class
    for each in (trainer, uniform):
        each.epoch, each.p_clean = config.correction_start, p_clean
        assert each.correct_labels(probs)
        each.epoch += 1  # the epoch completes: its correction counts in the outputs
    one_hot = np.eye(10)[labels]
    step = np.array([0.0, 1.0, 0.5])[:, None] * (1 - config.alpha)
    np.testing.assert_allclose(trainer.soft_labels[:3], (1 - step) * one_hot[:3] + step * probs[:3], atol=1e-6)
    np.testing.assert_allclose(uniform.soft_labels, config.alpha * one_hot + (1 - config.alpha) * probs, atol=1e-6)
    np.testing.assert_array_equal(trainer.uniform_soft_labels, uniform.soft_labels)
    np.testing.assert_array_equal(trainer.outputs().soft_label, uniform.outputs().soft_label)
    assert (trainer.outputs().soft_label.argmax(axis=1) == (labels + 1) % 10).all()
    # correction_rate="none": the training labels stay the given ones, the suggestions still move
    kept = Trainer(cpu_preset(10, correction_rate="none"), images, labels, 10)
    kept.epoch, kept.p_clean = config.correction_start, p_clean
    assert kept.correct_labels(probs)
    kept.epoch += 1
    np.testing.assert_array_equal(kept.soft_labels, one_hot)
    np.testing.assert_array_equal(kept.outputs().soft_label, uniform.outputs().soft_label)
    # correction_rate="estimated_noise": the noisy_probability step times the odds of noise the
    # run's first mixture fit sees (here about a fifth of the losses high: odds about 0.25)
    scaled = Trainer(cpu_preset(10, correction_rate="estimated_noise", clean_probability="mixture"),
                     images, labels, 10)
    scaled.epoch = config.correction_start
    scaled.p_clean = p_clean
    with pytest.raises(RuntimeError, match='correction_rate="estimated_noise" .* first mixture fit'):
        scaled.correct_labels(probs)  # before any fit the strength is unknown
    rng = np.random.default_rng(0)
    losses = np.where(np.arange(len(labels)) % 5 == 0, 5.0, 1.0) + rng.normal(0, 0.1, len(labels))
    scaled.fit_clean_probability(losses)
    strength = scaled.noise_strength
    assert strength == pytest.approx(noise_odds_strength(1 - scaled.p_clean.mean())) and 0.2 < strength < 0.3
    scaled.p_clean = p_clean
    assert scaled.correct_labels(probs)
    np.testing.assert_allclose(scaled.soft_labels[:3],
                               (1 - strength * step) * one_hot[:3] + strength * step * probs[:3], atol=1e-6)
    np.testing.assert_array_equal(scaled.soft_labels[3:], one_hot[3:])
    np.testing.assert_array_equal(scaled.uniform_soft_labels, uniform.soft_labels)
    # the strength is the first fit's: a later fit that calls most labels noisy keeps it, and so
    # does a checkpoint
    scaled.epoch += 1
    scaled.fit_clean_probability(-losses)
    assert scaled.p_clean.mean() < 0.5 and scaled.noise_strength == strength
    resumed = Trainer(scaled.config, images, labels, 10)
    resumed.load(scaled.save(tmp_path / "scaled.pt"))
    assert resumed.noise_strength == strength
    # noise_estimate="confident_joint": the share from the predictions, not the losses' mixture
    counted = Trainer(cpu_preset(10, correction_rate="estimated_noise", noise_estimate="confident_joint"),
                      images, labels, 10)
    with pytest.raises(ValueError, match="probs"):
        counted.fit_clean_probability(losses)
    predicted = (labels + (np.arange(len(labels)) % 3 == 0)) % 10  # a third of the labels contradicted
    counted.fit_clean_probability(losses, 0.9 * np.eye(10, dtype=np.float32)[predicted] + 0.01)
    assert counted.noise_strength == pytest.approx(0.5, abs=0.02)  # odds of 1/3; the mixture's: ~0.25


def test_mixture_switches_change_what_the_mixture_sees(digits):
    """mixture_loss picks the labels the losses are taken against; mixture_per_class fits each
    class alone; dynamic_weights=False mixes with equal weights whatever the clean probability;
    own_weight="clean_probability" lets a sample keep the share p_clean of itself."""
    images, labels = digits
    noisy, _ = inject_noise(labels, 10, "symmetric", 0.4, seed=0)
    trainer = Trainer(cpu_preset(4, mixture_loss="given"), images, noisy, 10)
    trainer.soft_labels = np.roll(trainer.soft_labels, 1, axis=1)  # corrected labels all differ
    assert np.array_equal(trainer.loss_labels(), noisy)
    current = Trainer(cpu_preset(4, clean_probability="mixture"), images, noisy, 10)
    current.soft_labels = trainer.soft_labels
    assert np.array_equal(current.loss_labels(), (noisy + 1) % 10)
    given_losses = trainer.evaluation_pass().losses
    assert not np.allclose(given_losses, current.evaluation_pass().losses)

    per_class = Trainer(cpu_preset(4, mixture_per_class=True, clean_probability="mixture"), images, noisy, 10)
    losses = per_class.evaluation_pass().losses
    fit = per_class.fit_clean_probability(losses)
    for label in range(10):  # each class's own min-max range
        rows = noisy == label
        assert fit.normalized_losses[rows].min() == 0 and fit.normalized_losses[rows].max() == 1

    logged = Trainer(cpu_preset(4, mixture_scale="log", clean_probability="mixture"), images, noisy, 10)
    assert np.allclose(logged.fit_clean_probability(losses).normalized_losses, mixture_input(losses, "log"))
    assert np.allclose(current.fit_clean_probability(losses).normalized_losses, normalize_losses(losses))

    neighbors = (np.arange(len(noisy)) + 1)[:, None] % len(noisy)
    dynamic = Trainer(cpu_preset(4, mixing_strength="full"), images, noisy, 10)
    equal = Trainer(cpu_preset(4, dynamic_weights=False, mixing_strength="full"), images, noisy, 10)
    dynamic.p_clean = equal.p_clean = np.r_[0.0, np.ones(len(noisy) - 1)]
    assert np.allclose(dynamic.member_weights(neighbors)[0], [0, 1], atol=1e-5)
    assert np.allclose(equal.member_weights(neighbors), 0.5)
    assert np.allclose(dynamic.member_weights(neighbors)[1:-1], 0.5)  # the last one's neighbour is 0
    replacing = Trainer(cpu_preset(4, own_weight="clean_probability", mixing_strength="full"), images, noisy, 10)
    replacing.p_clean = dynamic.p_clean
    assert np.allclose(replacing.member_weights(neighbors), [[0, 1]] + [[1, 0]] * (len(noisy) - 1))
    # mixing_strength="estimated_noise" (the default): the neighbours' share times the first fit's
    # odds of noise, unknown before that fit
    scaled = Trainer(cpu_preset(4), images, noisy, 10)
    scaled.p_clean = dynamic.p_clean
    with pytest.raises(RuntimeError, match="first mixture fit"):
        scaled.member_weights(neighbors)
    scaled.noise_strength = 0.25
    assert np.allclose(scaled.member_weights(neighbors), 0.25 * dynamic.member_weights(neighbors) + [0.75, 0])


def parameters(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize("method, options", [("mixnn", {}), ("mixup", {}),
                                             ("mixnn", {"correction_rate": "uniform"}),
                                             ("mixnn", {"correction_rate": "noisy_probability",
                                                        "mixing_strength": "full"}),
                                             ("mixnn", {"clean_probability": "posterior"})])
def test_checkpoint_round_trip_continues_bit_for_bit(digits, tmp_path, method, options):
    images, labels = digits
    noisy, _ = inject_noise(labels, 10, "symmetric", 0.4, seed=0)
    config = cpu_preset(6, method, seed=3, **options)  # warm-up 1 epoch, then 5 mixing epochs
    straight = Trainer(config, images, noisy, 10)
    straight.fit()

    first = Trainer(config, images, noisy, 10)
    for _ in range(3):
        first.run_epoch()
    first.save(tmp_path / "checkpoint.pt")
    resumed = Trainer(config, images, noisy, 10)
    resumed.load(tmp_path / "checkpoint.pt")
    resumed.fit()

    assert torch.equal(parameters(straight), parameters(resumed))
    assert np.array_equal(straight.soft_labels, resumed.soft_labels)
    assert np.array_equal(straight.p_clean, resumed.p_clean)
    assert np.array_equal(straight.uniform_soft_labels, resumed.uniform_soft_labels)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


# a valid value other than cpu_preset(2, "ce")'s for every field a ce run ignores
OTHER_VALUES = {"warmup_epochs": 2, "mixup_epochs": 1, "num_neighbors": 3, "knn_method": "exact",
                "normalize_features": False, "neighbor_scope": "batch", "alpha": 0.5, "correction_start": 0,
                "correction_every": 2, "correction_rate": "uniform", "loss_window": 3, "mixture_loss": "given",
                "mixture_scale": "log", "mixture_per_class": True, "gate_clean_probability": False,
                "gate_start": 1, "gate_under": "any", "consolidation_epochs": 1,
                "consolidation_weights": "kept",
                "consolidation_mixing": "eased",
                "dynamic_weights": False, "own_weight": "clean_probability", "mixing_strength": "full",
                "noise_estimate": "confident_joint", "bn_refresh_samples": 7,
                "bn_refresh_augmented": True, "symmetric_noise_smoothing": 0.3,
                "clean_probability": "posterior"}


def test_fields_ce_ignores_do_not_change_a_ce_run(digits):
    images, labels = digits
    noisy, _ = inject_noise(labels, 10, "symmetric", 0.4, seed=0)
    base = cpu_preset(2, "ce", seed=1)
    assert set(OTHER_VALUES) == FIELDS_CE_IGNORES
    assert all(getattr(base, field) != value for field, value in OTHER_VALUES.items())

    def trained(config):
        trainer = Trainer(config, images, noisy, 10)
        trainer.fit()
        return parameters(trainer), trainer.evaluation_pass().probs

    weights, probabilities = trained(base)
    changed = trained(base.with_changes(**OTHER_VALUES))
    assert torch.equal(changed[0], weights) and np.array_equal(changed[1], probabilities)
    # the comparison sees a field ce does read
    assert not torch.equal(trained(base.with_changes(weight_decay=0.01))[0], weights)


def test_checkpoint_of_format_1_still_resumes(digits, tmp_path):
    """Format 1 (before correction_rate) had only the uniform correction and no consolidation: it
    resumes such a run, and a run with another rate or with consolidation is refused by name."""
    images, labels = digits
    config = cpu_preset(6, seed=3, correction_rate="uniform", consolidation_epochs=0)
    trainer = Trainer(config, images, labels, 10)
    for _ in range(3):
        trainer.run_epoch()
    state = trainer.state_dict()
    del state["uniform_soft_labels"]
    for field in ("correction_rate", "consolidation_epochs", "neighbor_scope"):  # not in format 1
        del state["config"][field]
    state["format"] = 1
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="correction_rate"):
        Trainer(config.with_changes(correction_rate="noisy_probability"), images, labels, 10).load(tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"\(consolidation_epochs\)"):
        Trainer(config.with_changes(consolidation_epochs=1), images, labels, 10).load(tmp_path / "old.pt")
    resumed = Trainer(config, images, labels, 10)
    resumed.load(tmp_path / "old.pt")
    np.testing.assert_array_equal(resumed.uniform_soft_labels, trainer.uniform_soft_labels)
    np.testing.assert_array_equal(resumed.outputs().suggested_label, trainer.outputs().suggested_label)
    state["format"] = 7
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format 7"):
        resumed.load(tmp_path / "future.pt")


def test_checkpoint_refuses_another_configuration(digits, tmp_path):
    images, labels = digits
    trainer = Trainer(cpu_preset(4), images, labels, 10)
    trainer.save(tmp_path / "c.pt")
    other = Trainer(cpu_preset(4, seed=1), images, labels, 10)
    with pytest.raises(ValueError, match="seed"):
        other.load(tmp_path / "c.pt")


def test_diverging_run_stops_with_a_clear_error(digits):
    images, labels = digits
    trainer = Trainer(cpu_preset(3, "ce", lr=1e30), images, labels, 10)
    with pytest.raises(TrainingDiverged, match="epoch 0"):
        trainer.fit()


def test_mixnn_fixes_digits_with_40_percent_symmetric_noise(digits):
    """End to end: corrected labels right far more often than the given ones; high AUROC."""
    images, labels = digits
    noisy, info = inject_noise(labels, 10, "symmetric", 0.4, seed=0)
    started = time.perf_counter()
    trainer = Trainer(cpu_preset(15, seed=0), images, noisy, 10)
    trainer.fit()
    out = trainer.outputs()
    metrics = label_quality_metrics(noisy, out.suggested_label, out.label_quality,
                                    out.is_label_issue, labels)
    own_predictions = (trainer.evaluation_pass().probs.argmax(axis=1) == labels).mean()
    print(f"\ndigits 40 % symmetric ({info['realised_noise_rate']:.1%} wrong), 15 epochs, "
          f"{time.perf_counter() - started:.0f} s: given right {metrics['given_label_accuracy']:.3f}"
          f" -> suggested right {metrics['label_recovery']:.3f}; detection F1 {metrics['f1']:.3f}, "
          f"AUROC {metrics['auroc']:.3f}; the model's own predictions right {own_predictions:.3f}")
    # Plain training's argmax on this budget recovers about 0.9; a broken mixture, weighting
    # or correction leaves the given labels' 0.64 or collapses far below it.
    assert metrics["given_label_accuracy"] < 0.7
    assert metrics["label_recovery"] > 0.9
    assert metrics["auroc"] > 0.95
    assert metrics["f1"] > 0.85
    # only the labels confident learning counts as wrong are changed, and all of them are
    np.testing.assert_array_equal(out.suggested_label != noisy, label_issues(noisy, out.soft_label))
    # the exported suggestion: the final predictions with the given label weighed by the run's noise
    final_probs = trainer.evaluation_pass().probs
    exported = trainer.outputs(final_probs)
    posterior, temperature = weighed_posterior(noisy, final_probs, exported.soft_label)
    np.testing.assert_array_equal(exported.suggested_label, posterior.argmax(axis=1))
    assert exported.suggestion_temperature == temperature
    exported_recovery = (exported.suggested_label == labels).mean()
    print(f"exported suggestion right {exported_recovery:.3f}")
    assert exported_recovery >= metrics["label_recovery"]
    assert (exported.soft_label == out.soft_label).all()


def test_batchnorm_refresh_images_are_augmented_only_when_asked(digits):
    """``bn_refresh_augmented`` feeds the refresh randomly cropped copies of its rows; off, the
    rows as they are."""
    images, labels = digits
    rows = torch.arange(256)
    for augmented in (False, True):
        trainer = Trainer(cpu_preset(4, "mixup", bn_refresh_augmented=augmented), images, labels, 10)
        seen = []
        hook = trainer.model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        trainer.refresh_batchnorm_statistics(rows)
        hook.remove()
        seen = torch.cat(seen)
        plain = normalize(trainer.images[rows], trainer._mean, trainer._std)
        assert seen.shape == plain.shape
        changed = (seen != plain).flatten(1).any(dim=1).float().mean().item()
        if augmented:
            assert changed > 0.5  # most crops are shifted (1 pixel of padding on 8x8 digits)
        else:
            assert changed == 0.0


def test_batchnorm_statistics_are_re_estimated_on_unmixed_images(digits):
    """After an epoch of mixed inputs the BatchNorm statistics come from real images: the first
    BatchNorm's running mean is the plain mean of its inputs over the refresh images."""
    images, labels = digits
    refreshed = Trainer(cpu_preset(4, "mixup", bn_refresh_samples=512), images, labels, 10)
    stale = Trainer(cpu_preset(4, "mixup", bn_refresh_samples=0), images, labels, 10)
    for trainer in (refreshed, stale):
        trainer.run_epoch()
    assert torch.equal(parameters(refreshed), parameters(stale))  # the refresh trains nothing
    norms = [m for m in refreshed.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stale_norm = next(m for m in stale.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(norms[0].running_mean, stale_norm.running_mean)
    assert all(m.momentum == 0.1 for m in norms)

    inputs = []
    hook = norms[0].register_forward_hook(lambda module, args, out: inputs.append(args[0]))
    rows = torch.arange(512)
    norms[0].running_mean.fill_(1e3)
    refreshed.refresh_batchnorm_statistics(rows)
    hook.remove()
    seen = torch.cat(inputs)
    assert seen.shape[0] == 512
    assert torch.allclose(norms[0].running_mean, seen.mean(dim=(0, 2, 3)), atol=1e-4)
