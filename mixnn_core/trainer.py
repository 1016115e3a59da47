"""The training loop, one epoch at a time, with exact stop-and-resume.

One mixing epoch of MixNN (``run_epoch`` does all of it; the pipeline calls the steps itself):
  1. ``evaluation_pass``: features, per-sample loss against the current hard labels, predictions;
  2. ``fit_clean_probability``: the two-component mixture over the losses -> p_clean;
  3. neighbours of every sample in feature space (``mixnn_core.knn``);
  4. ``correct_labels``: soft labels move toward the predictions (when the schedule says so);
  5. ``train_epoch``: each sample mixed with its neighbours by clean-probability weights,
     trained on with the mixed soft labels.
Consolidation epochs (the last ``consolidation_epochs``) run steps 1, 2 and 4 and train on the
un-mixed samples with their soft labels, each loss weighted by the clean probability. Warm-up
epochs (and the ``ce`` method) train on the given labels; ``mixup`` mixes random pairs.

Under ``torch.distributed`` (see ``mixnn_core.distributed``) each process trains on its share
of every batch through DistributedDataParallel, and steps 1-4 run on rank 0 only, their results
broadcast to every process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from mixnn_core.augment import channel_statistics, normalize, random_crop_flip
from mixnn_core.confident_learning import (
    confident_joint_noise_share,
    noise_concentration,
    noise_kind,
)
from mixnn_core.config import SUGGESTION_GIVEN_LABEL_WEIGHT, TrainConfig
from mixnn_core.correction import (
    correction_momentum,
    ema_update,
    estimated_noise_share,
    noise_odds_strength,
    suggestion_soft_labels,
)
from mixnn_core.files import read_torch_state, replace_atomically
from mixnn_core.gmm import MixtureFit, fit_mixture, fit_mixture_per_class, mixture_input
from mixnn_core.knn import nearest_neighbors, neighbors_within_groups
from mixnn_core.label_posterior import posterior_clean_probability, rank_matched
from mixnn_core.mixing import (
    mix_batch,
    mixing_weights,
    replacement_weights,
    scaled_neighbor_share,
    smoothed_targets,
    soft_cross_entropy,
)
from mixnn_core.models import build_model, resolve_model_name
from mixnn_core.outputs import SampleOutputs, mixnn_outputs, sample_outputs

CHECKPOINT_FORMAT = 2  # 2: uniform_soft_labels
# Fields that may differ between a checkpoint and the configuration resuming it.
RESUMABLE_CHANGES = {"device", "eval_batch_size"}
# Fields added after checkpoint format 2, with the value that reproduces the code that wrote a
# checkpoint lacking them.
FIELDS_OF_OLDER_CHECKPOINTS = {"consolidation_epochs": 0, "neighbor_scope": "dataset",
                               "gate_clean_probability": False, "gate_start": 0,
                               "consolidation_weights": "clean_probability", "mixing_strength": "full",
                               "mixture_scale": "linear", "noise_estimate": "mixture",
                               "symmetric_noise_smoothing": 0.0, "consolidation_mixing": "none",
                               "gate_under": "any"}


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EvalPass:
    """One evaluation pass over the training set (eval mode, no augmentation)."""

    features: np.ndarray  # (N, D) float32 penultimate features
    losses: np.ndarray  # (N,) cross-entropy against Trainer.loss_labels()
    probs: np.ndarray  # (N, C) float32 softmax predictions


def process_rank_and_count() -> tuple[int, int]:
    """This process's rank and the number of processes: (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def epoch_neighbors(features: np.ndarray, config: TrainConfig, epoch: int) -> np.ndarray:
    """Each sample's ``num_neighbors`` neighbours (N, K) for mixing epoch ``epoch``: over the
    whole training set, or within random groups of ``batch_size`` samples drawn anew each epoch
    (``neighbor_scope``)."""
    if config.neighbor_scope == "batch":
        return neighbors_within_groups(features, config.num_neighbors, config.batch_size,
                                       seed=(config.seed, epoch), normalize=config.normalize_features)
    return nearest_neighbors(features, config.num_neighbors, config.knn_method,
                             normalize=config.normalize_features)


class Trainer:
    """Trains a model on ``images`` (uint8, N x C x H x W) with given ``labels`` (N,).

    ``true_labels`` (known only when noise was injected for evaluation) and the test set are
    used for reporting per-epoch metrics, never for training or for any choice.

    Made in every process of an initialised ``torch.distributed`` group (all with the same
    data and configuration), it trains with DistributedDataParallel: see ``train_epoch`` and
    ``mixing_neighbors`` for how the work is split, and ``mixnn_core.distributed``.
    """

    def __init__(self, config: TrainConfig, images: np.ndarray, labels: np.ndarray,
                 num_classes: int, *, test_images: np.ndarray | None = None,
                 test_labels: np.ndarray | None = None, true_labels: np.ndarray | None = None):
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int64)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")
        if config.method == "mixnn" and images.shape[0] <= config.num_neighbors:
            raise ValueError(f"{images.shape[0]} samples cannot have {config.num_neighbors} neighbours")
        self.config = config
        self.device = resolve_device(config.device)
        self.num_classes = num_classes
        self.input_shape = tuple(int(s) for s in images.shape[1:])
        self.model_name = resolve_model_name(config.model, self.input_shape)
        self.given_labels = labels
        self.true_labels = None if true_labels is None else np.asarray(true_labels, dtype=np.int64)
        self.images = torch.as_tensor(images).to(self.device)
        self.test_images = None if test_images is None else torch.as_tensor(test_images).to(self.device)
        self.test_labels = None if test_labels is None else np.asarray(test_labels, dtype=np.int64)
        mean, std = channel_statistics(images)
        self.normalization = {"mean": mean, "std": std}
        self._mean = torch.tensor(mean, device=self.device)
        self._std = torch.tensor(std, device=self.device)
        self.crop_padding = config.crop_padding if config.crop_padding >= 0 else self.input_shape[1] // 8

        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = build_model(self.model_name, self.input_shape, num_classes).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr,
                                         momentum=config.momentum, weight_decay=config.weight_decay)
        self.soft_labels = np.eye(num_classes, dtype=np.float32)[labels]
        self.p_clean = np.ones(labels.shape[0])
        self.mixture_p_clean = self.p_clean  # the last fit's mixture alone, gated as p_clean
        self.n_gated = 0  # samples the last fit's gate set to p_clean 0
        # the soft labels the method's uniform correction gives, which suggestions are read from;
        # the training soft labels themselves unless correction_rate scales each sample's step
        self.uniform_soft_labels = self.soft_labels
        # the odds of noise the run's first mixture fit sees in the labels as given (capped at 1):
        # the strength of the training correction and of the mixing under their "estimated_noise"
        self.noise_strength: float | None = None
        # how unevenly the first fit's evaluation pass puts labels in other classes
        # (confident_learning.noise_concentration): symmetric noise below
        # SYMMETRIC_NOISE_CONCENTRATION; decides symmetric_noise_smoothing and gate_under="flips"
        self.noise_concentration: float | None = None
        self.recent_losses: list[np.ndarray] = []
        self.epoch = 0  # completed epochs
        self.history: list[dict] = []
        self.rank, self.world_size = process_rank_and_count()
        self._train_model = self._model_for_training()

    # -- the steps of one epoch ------------------------------------------------------------

    @torch.no_grad()
    def evaluation_pass(self, start: int = 0, stop: int | None = None) -> EvalPass:
        """Features, per-sample loss against ``loss_labels()``, and predictions of samples
        ``[start, stop)`` (all by default), in batches of ``eval_batch_size`` from ``start``.

        A sample's results depend only on the batch it falls in, so evaluating a dataset shard
        by shard gives the same numbers wherever each shard runs.
        """
        stop = self.images.shape[0] if stop is None else stop
        hard = torch.as_tensor(self.loss_labels(), device=self.device)
        # Filled in place: collecting per-batch results between the large, short-lived
        # activations fragmented the heap (2.6 GB peak at 60,000 images instead of 0.7 GB).
        n = stop - start
        features = np.empty((n, self.model.feature_dim), dtype=np.float32)
        losses = np.empty(n, dtype=np.float64)
        probs = np.empty((n, self.num_classes), dtype=np.float32)
        model = self.model.for_inference()
        for first in range(start, stop, self.config.eval_batch_size):
            batch = slice(first, min(first + self.config.eval_batch_size, stop))
            rows = slice(batch.start - start, batch.stop - start)
            h = model.features(normalize(self.images[batch], self._mean, self._std))
            logits = model.classifier(h)
            features[rows] = h.float().cpu().numpy()
            losses[rows] = F.cross_entropy(logits, hard[batch], reduction="none").double().cpu().numpy()
            probs[rows] = F.softmax(logits, dim=1).float().cpu().numpy()
        return EvalPass(features, losses, probs)

    def loss_labels(self) -> np.ndarray:
        """The hard labels the mixture's losses are taken against (``mixture_loss``): the
        current corrected ones, argmax(soft labels), or the given ones."""
        if self.config.mixture_loss == "given":
            return self.given_labels
        return self.soft_labels.argmax(axis=1)

    def fit_clean_probability(self, losses: np.ndarray, probs: np.ndarray | None = None) -> MixtureFit:
        """Fit the mixture to this epoch's losses (averaged over ``loss_window`` epochs),
        over all samples or per class of ``loss_labels()`` (``mixture_per_class``); in the
        epochs ``gates_now`` names, the samples whose label ``outputs()``
        would change then get ``p_clean`` 0 (the returned fit keeps the mixture's own
        posterior). The run's first fit also sets ``noise_strength``, from the share of noisy
        labels ``config.noise_estimate`` names (``"confident_joint"`` reads it from ``probs``,
        the same evaluation pass's predictions), and ``noise_concentration`` from ``probs``."""
        if self.noise_strength is None and probs is None and self.config.symmetric_noise_smoothing > 0:
            raise ValueError("symmetric_noise_smoothing reads the first fit's predictions: pass probs")
        if probs is None and self.config.clean_probability != "mixture":
            raise ValueError(f'clean_probability="{self.config.clean_probability}" reads the evaluation '
                             "pass's predictions: pass probs")
        window = self.recent_losses + [mixture_input(losses, self.config.mixture_scale)]
        averaged = np.mean(window, axis=0)
        if self.config.mixture_per_class:
            fit = fit_mixture_per_class(averaged, self.loss_labels(), seed=self.config.seed)
        else:
            fit = fit_mixture(averaged, seed=self.config.seed)
        self.recent_losses = window[1:] if len(window) == self.config.loss_window else window
        if self.noise_strength is None:  # later fits see corrected labels (and a working correction)
            if probs is not None:
                self.noise_concentration = noise_concentration(self.given_labels, probs)
            self.noise_strength = noise_odds_strength(self.first_noise_share(fit.p_clean, probs))
        self.p_clean = self.mixture_p_clean = fit.p_clean
        source = self.clean_probability_source()
        if source != "mixture":
            posterior = posterior_clean_probability(self.given_labels, probs, self.loss_labels())
            if source == "posterior_rank":  # posterior's order, mixture's values
                self.p_clean = rank_matched(posterior, fit.p_clean)
            elif source == "posterior_scale":  # mixture's order, posterior's values
                self.p_clean = rank_matched(fit.p_clean, posterior)
            elif source == "posterior_scale_floor":  # ... never below the mixture's
                self.p_clean = np.maximum(fit.p_clean, rank_matched(fit.p_clean, posterior))
            else:
                self.p_clean = posterior
        self.n_gated = 0
        if self.gates_now():
            gated = self.outputs().suggested_label != self.given_labels
            self.p_clean = np.where(gated, 0.0, self.p_clean)
            self.mixture_p_clean = np.where(gated, 0.0, self.mixture_p_clean)
            self.n_gated = int(gated.sum())
        return fit

    def gates_now(self) -> bool:
        """Whether this epoch's fit is followed by the gate: an epoch
        ``config.gates_clean_probability`` names, and with ``gate_under="flips"`` only when the
        run's first fit did not read the noise as symmetric (``noise_read_as``; unread: gated)."""
        if not self.config.gates_clean_probability(self.epoch):
            return False
        return self.config.gate_under == "any" or self.noise_read_as() != "symmetric"

    def clean_probability_source(self) -> str:
        """Where this fit's p_clean comes from: ``config.clean_probability``, except that
        "posterior_scale_floor_symmetric" reads as "posterior_scale_floor" while the run's first
        fit read the noise as spread over the classes (``noise_concentration`` below
        SYMMETRIC_NOISE_CONCENTRATION, or not read) and as "mixture" under flips."""
        if self.config.clean_probability != "posterior_scale_floor_symmetric":
            return self.config.clean_probability
        return "mixture" if self.noise_read_as() == "flips" else "posterior_scale_floor"

    def noise_read_as(self) -> str | None:
        """How the run's first fit read the noise: "symmetric" (``noise_concentration`` below
        SYMMETRIC_NOISE_CONCENTRATION: spread over the classes), "flips" (at or above it), or
        None while it has not been read."""
        if self.noise_concentration is None:
            return None
        return noise_kind(self.noise_concentration)

    def first_noise_share(self, mixture_p_clean: np.ndarray, probs: np.ndarray | None) -> float:
        """The share of noisy labels ``noise_strength`` is read from (labels still as given), by
        the first fit's mixture (``mixture_p_clean``) or its evaluation pass (``probs``);
        ``"mixture_symmetric"``: the mixture's where the evaluation pass reads the noise as spread
        over the classes (``noise_read_as``) or there is no pass to read, 0 where it reads flips."""
        if self.config.noise_estimate == "mixture":
            return estimated_noise_share(mixture_p_clean)
        if self.config.noise_estimate == "mixture_symmetric":
            return 0.0 if self.noise_read_as() == "flips" else estimated_noise_share(mixture_p_clean)
        if probs is None:
            raise ValueError(f'noise_estimate="{self.config.noise_estimate}" needs the evaluation pass\'s '
                             'predictions (probs)')
        return confident_joint_noise_share(self.given_labels, probs)

    def correct_labels(self, probs: np.ndarray) -> bool:
        """EMA label correction with predictions ``probs``, when scheduled for this epoch.

        With ``correction_rate="noisy_probability"`` each training soft label's step is scaled
        by 1 - p_clean of the last mixture fit (``"estimated_noise"``: also by
        ``noise_strength``, the odds of noise by the run's first fit, capped at 1; ``"none"``: 0),
        and
        ``uniform_soft_labels`` keeps the method's own correction for the suggestions, so the
        rate changes what the model trains on, not how a suggestion is read.
        """
        if not self.config.corrects_labels(self.epoch):
            return False
        estimated = self.config.correction_rate == "estimated_noise"
        strength = self.first_fit_strength("correction_rate") if estimated else 1.0  # before any label moves
        self.uniform_soft_labels = ema_update(self.uniform_soft_labels, probs, self.config.alpha).astype(np.float32)
        if self.config.correction_rate == "uniform":
            self.soft_labels = self.uniform_soft_labels
        elif self.config.correction_rate != "none":
            momentum = correction_momentum(self.config.alpha, self.p_clean, strength)
            self.soft_labels = ema_update(self.soft_labels, probs, momentum).astype(np.float32)
        return True

    def train_epoch(self, neighbors: np.ndarray | None = None) -> dict:
        """Train one epoch in the phase the schedule gives; returns and records its history row.

        ``neighbors`` (N, K) is required in the epochs that mix (``searches_neighbors``) and
        must come from this epoch's evaluation pass; mixing weights use the clean probabilities
        of the last mixture fit. Consolidation epochs weight each sample's loss by
        ``consolidation_loss_weights`` (by default that fit's clean probability blended with 1 by
        the run's odds of noise), divided by the batch's mean so that the step size does not
        shrink with the noise rate; eased ones (``consolidation_mixing``) also mix, with the
        neighbours' share scaled down.

        With W processes, every process draws the same permutation and augmentation from the
        shared seeded generator and builds the same batch of ``batch_size`` synthetic samples;
        process r trains on rows [r B / W, (r + 1) B / W) of it, and DistributedDataParallel
        averages the gradients, so each optimiser step follows the whole batch as in one
        process. BatchNorm normalises each process's B / W rows (not SyncBatchNorm: it does not
        run on the CPU), so results differ from one process's slightly. ``train_loss`` is the
        whole batch's loss; after the epoch every process holds rank 0's BatchNorm statistics.
        """
        phase = self.config.phase(self.epoch)
        started = time.perf_counter()
        weights = None
        if self.config.searches_neighbors(self.epoch):
            if neighbors is None:
                raise ValueError(f"epoch {self.epoch} mixes with neighbours: pass neighbors=")
            neighbors = torch.as_tensor(np.asarray(neighbors, dtype=np.int64))
            member_weights = self.member_weights(neighbors.numpy())
            if phase == "consolidate":
                member_weights = scaled_neighbor_share(member_weights,
                                                       self.config.consolidation_neighbor_share(self.epoch))
            weights = torch.as_tensor(member_weights, dtype=torch.float32)
        else:
            neighbors = None
        if phase == "consolidate":
            loss_weights = torch.as_tensor(self.consolidation_loss_weights(), dtype=torch.float32)
        soft_labels = torch.as_tensor(self.soft_labels)
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator)
        steps = max(1, n // self.config.batch_size)  # drop the ragged last batch (BatchNorm)
        self._train_model.train()
        total_loss = 0.0
        for step in range(steps):
            lr = self.config.learning_rate(self.epoch + step / steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            index = order[step * self.config.batch_size:(step + 1) * self.config.batch_size]
            members, member_weights = self._batch_members(phase, index, neighbors, weights)
            inputs = self._augmented(members)
            mixed_inputs, mixed_labels = mix_batch(inputs, soft_labels[members].to(self.device),
                                                   member_weights.to(self.device))
            mixed_labels = smoothed_targets(mixed_labels, self.target_smoothing())
            rows = self._rows_of_this_process(mixed_inputs.shape[0])
            sample_weights = None
            if phase == "consolidate":
                sample_weights = loss_weights[index] / loss_weights[index].mean().clamp_min(1e-6)
                sample_weights = sample_weights[rows].to(self.device)
            loss = soft_cross_entropy(self._train_model(mixed_inputs[rows]), mixed_labels[rows],
                                      sample_weights)
            batch_loss = self._mean_over_processes(loss.detach())
            if not torch.isfinite(batch_loss):
                raise TrainingDiverged(f"training loss became {batch_loss.item()} at epoch "
                                       f"{self.epoch}, step {step} (lr {lr:.4g}); lower the "
                                       f"learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += batch_loss.item()
        if neighbors is not None or phase == "mixup":  # trained on mixed inputs
            self.refresh_batchnorm_statistics(order[:self.config.bn_refresh_samples])
        self._share_buffers_of_rank_zero()
        row = {"epoch": self.epoch, "phase": phase, "train_loss": total_loss / steps, "lr": lr,
               "seconds": time.perf_counter() - started}
        self.epoch += 1
        row.update(self._label_metrics())  # after the count: outputs() counts completed epochs
        self.history.append(row)
        return row

    def target_smoothing(self) -> float:
        """The share of every training target spread evenly over the classes this epoch:
        ``label_smoothing``, and on top of it ``symmetric_noise_smoothing`` once the first fit
        has read the noise as symmetric (``noise_concentration``)."""
        share = self.config.label_smoothing
        extra = self.config.symmetric_noise_smoothing
        if extra and self.noise_read_as() == "symmetric":
            share = 1.0 - (1.0 - share) * (1.0 - extra)
        return share

    def consolidation_loss_weights(self) -> np.ndarray:
        """Each sample's loss weight (N,) in a consolidation epoch (before the batch's
        normalisation): its clean probability, 1 where that is above 0, the two blended by the
        run's odds of noise, or the last fit's mixture alone, gated the same way
        (``consolidation_weights``)."""
        if self.config.consolidation_weights == "mixture":
            return np.asarray(self.mixture_p_clean, dtype=np.float64)
        p_clean = np.asarray(self.p_clean, dtype=np.float64)
        if self.config.consolidation_weights == "kept":
            return (p_clean > 0).astype(np.float64)
        if self.config.consolidation_weights == "estimated_noise":
            strength = self.first_fit_strength("consolidation_weights")
            # written so that strength 1 gives p_clean bit for bit
            blended = p_clean + (1.0 - strength) * (1.0 - p_clean)
            return np.where(p_clean > 0, blended, 0.0)
        return p_clean

    def member_weights(self, neighbors: np.ndarray) -> np.ndarray:
        """Weights (N, K + 1) of each sample and its neighbours in its synthetic sample: by
        clean probability (``dynamic_weights``, the method; ``own_weight`` says how) or equal,
        1 / (K + 1); with ``mixing_strength="estimated_noise"`` the neighbours' share scaled by
        ``noise_strength``."""
        if not self.config.dynamic_weights:
            weights = mixing_weights(np.ones_like(self.p_clean), neighbors)
        elif self.config.own_weight == "clean_probability":
            weights = replacement_weights(self.p_clean, neighbors)
        else:
            weights = mixing_weights(self.p_clean, neighbors)
        if self.config.mixing_strength == "estimated_noise":
            weights = scaled_neighbor_share(weights, self.first_fit_strength("mixing_strength"))
        return weights

    def first_fit_strength(self, field: str) -> float:
        """``noise_strength`` for the option ``field="estimated_noise"``; a clear error naming
        ``field`` when the run's first mixture fit has not set it yet."""
        if self.noise_strength is None:
            raise RuntimeError(f'{field}="estimated_noise" reads its strength from the run\'s first mixture '
                               'fit (fit_clean_probability); none has run yet')
        return self.noise_strength

    @torch.no_grad()
    def refresh_batchnorm_statistics(self, rows: torch.Tensor) -> None:
        """Re-estimate the BatchNorm running statistics on the un-mixed training images ``rows``
        (augmented as in training when ``bn_refresh_augmented``).

        A blend of two images has less contrast than either, so statistics gathered while
        training on mixed inputs misfit the real images the model is evaluated on (the next
        evaluation pass, whose losses, features and predictions drive the method, and the test
        set). Measured on Fashion-MNIST asym 40 %: re-estimating them raised the held-out
        accuracy by 1.0-1.5 points per mixing epoch (BENCHMARKS.md).
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or rows.numel() == 0:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        self.model.train()
        for first in range(0, rows.numel(), self.config.eval_batch_size):
            batch = rows[first:first + self.config.eval_batch_size].to(self.device)
            if batch.numel() < 2:  # batch statistics need two samples
                break
            if self.config.bn_refresh_augmented:
                self.model(self._augmented(batch[:, None])[:, 0])
            else:
                self.model(normalize(self.images[batch], self._mean, self._std))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    def run_epoch(self) -> dict:
        """One whole epoch: in mixing epochs all five steps, in consolidation epochs all but the
        neighbour search (unless eased, ``consolidation_mixing``), otherwise plain training."""
        if not self.config.fits_mixture(self.epoch):
            return self.train_epoch()
        return self.train_epoch(self.mixing_neighbors())

    def mixing_neighbors(self) -> np.ndarray | None:
        """Steps 1-4 of a mixing epoch; returns each sample's neighbours (N, K) for step 5, or
        None in a consolidation epoch that trains un-mixed, which skips the search (step 3).

        Updates ``p_clean`` (and the soft labels, when the schedule corrects them). Under
        torch.distributed, rank 0 alone runs the evaluation pass, the mixture fit, the
        neighbour search and the correction, then broadcasts the neighbours, ``p_clean`` and the
        soft labels (both kinds); rank 0 alone keeps the ``loss_window`` history the fit needs.
        """
        neighbors = None
        if self.rank == 0:
            evaluation = self.evaluation_pass()
            self.fit_clean_probability(evaluation.losses, evaluation.probs)
            if self.config.searches_neighbors(self.epoch):
                neighbors = epoch_neighbors(evaluation.features, self.config, self.epoch)
            self.correct_labels(evaluation.probs)
        return self._share_mixing_state(neighbors)

    def fit(self, progress=None) -> list[dict]:
        """Train the remaining epochs; ``progress(row)`` is called after each."""
        while self.epoch < self.config.epochs:
            row = self.run_epoch()
            if progress is not None:
                progress(row)
        return self.history

    # -- predictions and outputs -----------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """Softmax predictions (N, C) for uint8 images already on the device."""
        model = self.model.for_inference()
        probs = np.empty((images.shape[0], self.num_classes), dtype=np.float32)
        for start in range(0, images.shape[0], self.config.eval_batch_size):
            rows = slice(start, start + self.config.eval_batch_size)
            probs[rows] = F.softmax(model(normalize(images[rows], self._mean, self._std)), dim=1).float().cpu().numpy()
        return probs

    def test_accuracy(self) -> float | None:
        if self.test_images is None:
            return None
        return float((self.predict_proba(self.test_images).argmax(1) == self.test_labels).mean())

    def outputs(self, final_probs: np.ndarray | None = None) -> SampleOutputs:
        """Per-sample outputs; ``final_probs`` (N, C): the model's predictions on the training
        samples, from an evaluation pass (for ``ce`` / ``mixup`` made here when not given).

        For ``mixnn``: ``outputs.mixnn_outputs`` of the corrected soft labels with the given
        label's share cut to ``SUGGESTION_GIVEN_LABEL_WEIGHT`` (``suggestion_soft_labels``); the
        suggestion weighs the given label when ``final_probs`` are given, else it is confident
        learning's count. For ``ce`` / ``mixup``: the predictions' argmax, the baselines of
        BENCHMARKS.md."""
        if self.config.method != "mixnn":
            soft = final_probs if final_probs is not None else self.evaluation_pass().probs
            return sample_outputs(self.given_labels, soft, self.p_clean)
        soft = suggestion_soft_labels(self.uniform_soft_labels, self.given_labels,
                                      self.config.given_label_share(self.epoch), SUGGESTION_GIVEN_LABEL_WEIGHT)
        return mixnn_outputs(self.given_labels, soft, self.p_clean, final_probs)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue exactly; loadable with ``weights_only=True``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model_name": self.model_name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "normalization": self.normalization,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "soft_labels": torch.from_numpy(self.soft_labels),
            "p_clean": torch.from_numpy(np.asarray(self.p_clean, dtype=np.float64)),
            "uniform_soft_labels": torch.from_numpy(self.uniform_soft_labels),
            "noise_strength": self.noise_strength,
            "noise_concentration": self.noise_concentration,
            "recent_losses": [torch.from_numpy(x) for x in self.recent_losses],
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (aside, then renamed), so a crash never leaves half.

        Under torch.distributed only rank 0 writes (every process holds the same state); the
        checkpoint is the plain model's and loads into a single-process trainer as well.
        """
        if self.rank != 0:
            return Path(path)
        state = self.state_dict()
        return replace_atomically(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | Path, remedy: str = "") -> None:
        """Continue from a checkpoint written by ``save`` for the same data and configuration;
        an unreadable file's error names it, followed by ``remedy``."""
        self.load_state_dict(read_torch_state(path, remedy), origin=path)

    def load_state_dict(self, state: dict, origin: str | Path = "checkpoint") -> None:
        """Continue from a ``state_dict()`` of a trainer of the same data and configuration;
        errors name ``origin`` (the file it was read from)."""
        if state.get("format") not in (1, CHECKPOINT_FORMAT):
            raise ValueError(f"{origin}: unknown checkpoint format {state.get('format')!r}")
        recorded = {**FIELDS_OF_OLDER_CHECKPOINTS, **state["config"]}
        if state["format"] == 1:  # written before correction_rate existed: the uniform correction
            recorded.setdefault("correction_rate", "uniform")
        saved = TrainConfig.from_dict(recorded)
        differing = [k for k, v in self.config.to_dict().items()
                     if k not in RESUMABLE_CHANGES and saved.to_dict()[k] != v]
        if differing:
            raise ValueError(f"{origin}: checkpoint was written with a different configuration "
                             f"({', '.join(differing)}); use a new run directory")
        if state["soft_labels"].shape != self.soft_labels.shape:
            raise ValueError(f"{origin}: checkpoint is for {tuple(state['soft_labels'].shape)} "
                             f"soft labels, this data gives {self.soft_labels.shape}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.soft_labels = state["soft_labels"].numpy().copy()
        self.p_clean = state["p_clean"].numpy().copy()
        self.uniform_soft_labels = self.soft_labels
        if self.config.correction_rate != "uniform":  # never a format 1 checkpoint (above)
            self.uniform_soft_labels = state["uniform_soft_labels"].numpy().copy()
        # absent before estimated_noise; named correction_strength before mixing_strength
        self.noise_strength = state.get("noise_strength", state.get("correction_strength"))
        self.noise_concentration = state.get("noise_concentration")  # absent before the thirty-first pass
        self.recent_losses = [x.numpy().copy() for x in state["recent_losses"]]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # -- internals -------------------------------------------------------------------------

    def _model_for_training(self) -> torch.nn.Module:
        """The model itself in one process, else its DistributedDataParallel wrapper.

        ``self.model`` stays the plain module (evaluation, features, checkpoints, export).
        """
        if self.world_size == 1:
            return self.model
        if self.config.batch_size % self.world_size:
            raise ValueError(f"batch_size {self.config.batch_size} must be divisible by the "
                             f"{self.world_size} processes")
        if self.images.shape[0] < self.config.batch_size:
            raise ValueError(f"{self.images.shape[0]} samples are fewer than one batch of "
                             f"{self.config.batch_size}; multi-process training needs full batches")
        return DistributedDataParallel(self.model)

    def _rows_of_this_process(self, batch_size: int) -> slice:
        """This process's equal share of a batch of ``batch_size`` rows (all of it in one)."""
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over all processes (``value`` itself in one process)."""
        if self.world_size == 1:
            return value
        total = value.clone()
        dist.all_reduce(total)
        return total / self.world_size

    def _share_buffers_of_rank_zero(self) -> None:
        """Copy rank 0's BatchNorm statistics to every process, so all hold the same model."""
        if self.world_size == 1:
            return
        for buffer in self.model.buffers():
            dist.broadcast(buffer, src=0)

    def _share_mixing_state(self, neighbors: np.ndarray | None) -> np.ndarray | None:
        """Rank 0's ``neighbors``, clean probabilities, soft labels and noise strength, in every
        process."""
        if self.world_size == 1:
            return neighbors
        shared = [neighbors, self.p_clean, self.mixture_p_clean, self.soft_labels, self.uniform_soft_labels,
                  self.noise_strength, self.noise_concentration]
        dist.broadcast_object_list(shared, src=0)
        (neighbors, self.p_clean, self.mixture_p_clean, self.soft_labels, self.uniform_soft_labels,
         self.noise_strength, self.noise_concentration) = shared
        return neighbors

    def _batch_members(self, phase, index, neighbors, weights):
        """Indices (B, M) of the samples mixed into each synthetic sample, and their weights."""
        if neighbors is not None:
            return torch.cat([index[:, None], neighbors[index]], dim=1), weights[index]
        if phase == "mixup":
            lam = float(torch.rand(1, generator=self.generator))  # Beta(1, 1) is uniform
            partners = index[torch.randperm(index.shape[0], generator=self.generator)]
            pair_weights = torch.tensor([lam, 1.0 - lam]).expand(index.shape[0], 2)
            return torch.stack([index, partners], dim=1), pair_weights
        return index[:, None], torch.ones(index.shape[0], 1)

    def _augmented(self, members: torch.Tensor) -> torch.Tensor:
        """Augmented, normalised inputs (B, M, C, H, W) of the member samples."""
        flat = self.images[members.reshape(-1).to(self.device)].float() / 255.0
        flat = random_crop_flip(flat, self.crop_padding, self.config.hflip, self.generator)
        flat = normalize(flat, self._mean, self._std)
        return flat.view(*members.shape, *flat.shape[1:])

    def _label_metrics(self) -> dict:
        """Reporting-only figures after an epoch: test accuracy, label changes and recovery."""
        metrics = {"mean_p_clean": float(np.mean(self.p_clean))}
        if self.noise_strength is not None:
            metrics["noise_strength"] = self.noise_strength
        if self.noise_concentration is not None:
            metrics["noise_concentration"] = self.noise_concentration
        # ce / mixup suggestions need an evaluation pass: made only when recovery is measured
        suggested = self.outputs().suggested_label if self.config.method == "mixnn" or self.true_labels is not None else None
        if self.config.method == "mixnn":
            metrics["n_label_changes"] = int((suggested != self.given_labels).sum())
        accuracy = self.test_accuracy()
        if accuracy is not None:
            metrics["test_acc"] = accuracy
        if self.true_labels is not None:
            metrics["label_recovery"] = float((suggested == self.true_labels).mean())
        return metrics
