"""Stage 3c, every epoch: mixture fit (mixing epochs), label correction, one training epoch."""

from __future__ import annotations

import json

import numpy as np
import torch
from prefect import get_run_logger, task

from mixnn_core.evaluation_table import read_evaluation_table
from mixnn_core.files import read_vector_column, write_json_atomic
from mixnn_core.trainer import Trainer, TrainingDiverged
from tasks.run_files import RunFiles, checkin_trainer, checkout_trainer, prune_checkpoints


def non_finite_state(trainer: Trainer) -> list[str]:
    """Names of the model's weights and statistics holding NaN or infinite values."""
    return [name for name, value in trainer.model.state_dict().items()
            if value.is_floating_point() and not torch.isfinite(value).all()]


def diverged(run: RunFiles, epoch: int, reason: str) -> TrainingDiverged:
    """The error of a run that diverged in ``epoch``: ``reason``, and where its last good state is."""
    last = f"the last good checkpoint is {run.checkpoint(epoch - 1)}" if epoch else "no epoch completed"
    return TrainingDiverged(f"{reason}; {last}; a resumed run would diverge again: use a new run "
                            f"directory")


@task(name="train-epoch")
def train_epoch(run_dir: str, epoch: int) -> dict:
    """Train epoch ``epoch`` and write ``checkpoints/epoch=NNN.pt``; returns its history row.

    In mixing and consolidation epochs the clean probabilities are fitted to the losses of
    this epoch's evaluation pass and the soft labels corrected with its predictions (when
    scheduled); in mixing epochs each sample is then mixed with the neighbours found in its
    features. A model that has diverged
    (NaN or infinite losses, weights or statistics) raises ``TrainingDiverged``, and no
    checkpoint is written for the epoch.
    """
    run = RunFiles(run_dir)
    trainer = checkout_trainer(run, epoch)
    neighbors = None
    if trainer.config.fits_mixture(epoch):
        evaluation = read_evaluation_table(run.features(epoch), ["loss", "probs"])
        losses = evaluation.column("loss").to_numpy()
        if not np.isfinite(losses).all():
            raise diverged(run, epoch, f"training diverged before epoch {epoch}: the evaluation pass gave "
                                       f"{int((~np.isfinite(losses)).sum())} non-finite losses; lower "
                                       f"the learning rate")
        probs = read_vector_column(evaluation, "probs")
        fit = trainer.fit_clean_probability(losses, probs)
        write_json_atomic({"epoch": epoch, "means": fit.means, "variances": fit.variances,
                           "weights": fit.weights, "mean_p_clean": float(fit.p_clean.mean()),
                           "mean_p_clean_used": float(np.mean(trainer.p_clean)), "n_gated": trainer.n_gated,
                           "noise_read_as": trainer.noise_read_as()},
                          run.mixture(epoch))
        trainer.correct_labels(probs)
        if trainer.config.searches_neighbors(epoch):
            neighbors = np.load(run.neighbors(epoch), allow_pickle=False)
    try:
        row = trainer.train_epoch(neighbors)
    except TrainingDiverged as error:
        raise diverged(run, epoch, str(error)) from error
    broken = non_finite_state(trainer)
    if broken:
        raise diverged(run, epoch, f"training diverged in epoch {epoch}: it left non-finite values in "
                                   f"{', '.join(broken[:3])}{' and more' if len(broken) > 3 else ''}; "
                                   f"lower the learning rate")
    trainer.save(run.checkpoint(epoch))
    checkin_trainer(run, trainer)
    prune_checkpoints(run)
    get_run_logger().info("epoch %d/%d (%s): %s", epoch + 1, trainer.config.epochs, row["phase"],
                          json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                      for k, v in row.items() if k not in ("epoch", "phase")}))
    return row
