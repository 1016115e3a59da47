"""Stage 3c, every epoch: mixture fit (mixing epochs), label correction, one training epoch."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from mixnn_core.files import read_vector_column, write_json_atomic
from tasks.run_files import RunFiles, checkin_trainer, checkout_trainer, prune_checkpoints


@task(name="train-epoch")
def train_epoch(run_dir: str, epoch: int) -> dict:
    """Train epoch ``epoch`` and write ``checkpoints/epoch=NNN.pt``; returns its history row.

    In mixing epochs the clean probabilities are fitted to the losses of this epoch's
    evaluation pass, the soft labels corrected with its predictions (when scheduled), and
    each sample mixed with the neighbours found in its features.
    """
    run = RunFiles(run_dir)
    trainer = checkout_trainer(run, epoch)
    neighbors = None
    if trainer.config.phase(epoch) == "mixnn":
        evaluation = pq.read_table(run.features(epoch), columns=["loss", "probs"])
        fit = trainer.fit_clean_probability(evaluation.column("loss").to_numpy())
        write_json_atomic({"epoch": epoch, "means": fit.means, "variances": fit.variances,
                           "weights": fit.weights, "mean_p_clean": float(fit.p_clean.mean())},
                          run.mixture(epoch))
        trainer.correct_labels(read_vector_column(evaluation, "probs"))
        neighbors = np.load(run.neighbors(epoch), allow_pickle=False)
    row = trainer.train_epoch(neighbors)
    trainer.save(run.checkpoint(epoch))
    checkin_trainer(run, trainer)
    prune_checkpoints(run)
    get_run_logger().info("epoch %d/%d (%s): %s", epoch + 1, trainer.config.epochs, row["phase"],
                          json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                      for k, v in row.items() if k not in ("epoch", "phase")}))
    return row
