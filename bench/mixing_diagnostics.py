"""What the mixing trains on, epoch by epoch: a diagnostic that reads the TRUE labels.

    .venv/bin/python bench/mixing_diagnostics.py --setting cifar10n-worse --epochs 20

Trains one ``mixnn`` run (the cpu preset, ``--set FIELD=VALUE`` to change it) epoch by epoch as
``Trainer.run_epoch`` does and, in every mixing epoch, scores against the true labels what
``Trainer.mixing_neighbors`` left for the training step:

- ``p_clean_auroc``: how well the clean probability ranks correct given labels above wrong ones;
- ``p_clean_correct`` / ``p_clean_wrong``: its mean over samples whose given label is correct /
  wrong;
- ``neighbor_agreement``: share of (sample, neighbour) pairs of the same true class;
- ``target_wrong_mass``: mass the synthetic samples' soft labels put on classes other than their
  members' true ones, sum_j w_ij (1 - t_j[true_j]) averaged over samples (plain training on the
  given labels: the wrong-label share);
- ``own_weight_correct``: mean weight a correctly labelled sample keeps in its own synthetic
  sample (1 = not mixed; 1 / (K + 1) = blended evenly);
- ``soft_label_wrong_mass``: 1 - t_i[true_i] averaged over samples (the training soft labels,
  which the mixing uses; under ``correction_rate="noisy_probability"`` not the uniformly
  corrected ones the suggestions are read from).

and, in every epoch that fits the mixture, how each ``mixture_scale`` would read that epoch's
losses (an extra evaluation pass, which draws no random numbers, so the run is unchanged):
``noise_share_<scale>`` (1 - mean p_clean) and ``p_clean_auroc_<scale>``, and the share of
wrong labels confident learning estimates from that pass's predictions
(``noise_share_confident_joint``, no loss scale) and how unevenly it spreads them over the
other classes (``noise_concentration``: symmetric noise low, flips high) and how much of that
spread runs both ways between two classes (``flip_reciprocity``). ``--until N`` stops
after N epochs, scoring epoch N's fit without training it (``--until 4`` on a 20-epoch budget:
the warm-up and the first fit only).

At the end of a whole run (no ``--until``), ``label_quality_epoch_average``: the AUROC (wrong
given labels against right ones) of the given label's predicted probability averaged over the
last N of those evaluation passes and the final one (N = 0: the final model alone, mixnn's
``label_quality``).

Its numbers explain what a default does; they must not choose one (choices use held-out noisy
labels, bench/tune.py). Results go to ``bench/results/diagnostics/<setting>-e<epochs>[-FIELD=VALUE...][-s<seed>].json``
(``--seed``: the suite's seed of that name, 0 by default);
with ``--samples FILE.npz`` the final per-sample arrays too (given and true labels, suggestion
soft labels, clean probabilities, the final model's predictions), to study suggestion rules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import (  # noqa: E402
    SETTINGS,
    code_version,
    config_assignments,
    load,
    machine_record,
    write_final_arrays,
)
from mixnn_core.confident_learning import (  # noqa: E402
    confident_joint,
    confident_joint_noise_share,
    noise_concentration,
)
from mixnn_core.config import MIXTURE_SCALES, cpu_preset  # noqa: E402
from mixnn_core.files import write_json_atomic  # noqa: E402
from mixnn_core.gmm import fit_mixture, mixture_input  # noqa: E402
from mixnn_core.metrics import detection_auroc  # noqa: E402
from mixnn_core.trainer import Trainer  # noqa: E402


def mixing_scores(p_clean: np.ndarray, neighbors: np.ndarray, weights: np.ndarray, soft_labels: np.ndarray,
                  given: np.ndarray, true: np.ndarray) -> dict:
    """The scores listed in the module docstring for one mixing epoch (arrays as in the Trainer)."""
    correct = given == true
    members = np.concatenate([np.arange(len(true))[:, None], neighbors], axis=1)
    own_true_mass = soft_labels[np.arange(len(true)), true]
    return {
        "p_clean_auroc": detection_auroc(p_clean, ~correct),
        "p_clean_correct": float(p_clean[correct].mean()),
        "p_clean_wrong": float(p_clean[~correct].mean()) if (~correct).any() else None,
        "neighbor_agreement": float((true[neighbors] == true[:, None]).mean()),
        "target_wrong_mass": float((weights * (1.0 - own_true_mass[members])).sum(axis=1).mean()),
        "own_weight_correct": float(weights[correct, 0].mean()),
        "soft_label_wrong_mass": float(1.0 - own_true_mass.mean()),
    }


def flip_reciprocity(given: np.ndarray, probs: np.ndarray) -> float:
    """Share of ``confident_joint``'s off-diagonal counts that run both ways:
    sum over class pairs of 2 min(J[j, k], J[k, j]) over the off-diagonal total. 1 when every
    count (given j, true k) is matched by one (given k, true j), as under symmetric noise or
    flips between two classes both ways; near 0 when labels move one way round the classes
    (pair-flip); 0 when nothing is off the diagonal."""
    joint = confident_joint(given, probs).astype(np.float64)
    np.fill_diagonal(joint, 0.0)
    total = joint.sum()
    return float(np.minimum(joint, joint.T).sum() / total) if total > 0 else 0.0


def epoch_average_auroc(given_probabilities: list[np.ndarray], final: np.ndarray, given: np.ndarray,
                        true: np.ndarray, last: tuple[int, ...] = (0, 1, 2, 4, 8)) -> dict:
    """AUROC of ranking the wrong given labels below the right ones by the given label's
    predicted probability, the final model's (``final``, N,) averaged with the last N of the
    evaluation passes' (``given_probabilities``, oldest first, each N,); "all": every pass."""
    counts = [n for n in last if n <= len(given_probabilities)] + ["all"]
    scores = {}
    for n in counts:
        passes = given_probabilities if n == "all" else given_probabilities[len(given_probabilities) - n:]
        scores[str(n)] = detection_auroc(np.mean([*passes, final], axis=0), given != true)
    return scores


def scale_scores(losses: np.ndarray, given: np.ndarray, true: np.ndarray, seed: int = 0) -> dict:
    """For each mixture scale, on one epoch's losses: the share of labels the mixture takes for
    noisy and the AUROC of its p_clean for correct vs wrong given labels."""
    scores = {}
    for scale in MIXTURE_SCALES:
        p_clean = fit_mixture(mixture_input(losses, scale), seed=seed).p_clean
        scores[f"noise_share_{scale}"] = float(1.0 - p_clean.mean())
        scores[f"p_clean_auroc_{scale}"] = detection_auroc(p_clean, given != true)
    return scores


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diagnostics")
    parser.add_argument("--samples", type=Path, help="write the final per-sample arrays here (.npz)")
    parser.add_argument("--until", type=int, help="stop after this many epochs, scoring the next fit")
    parser.add_argument("--seed", type=int, default=0, help="noise and training seed, as the suite's --seeds")
    args = parser.parse_args(argv)
    overrides = config_assignments(parser, args.set)
    code = code_version()  # before training: the checkout may move while it runs
    setting = SETTINGS[args.setting]
    data = load(setting, seed=args.seed)
    config = cpu_preset(args.epochs, "mixnn", **{"seed": args.seed, **setting.train_options(), **overrides})
    trainer = Trainer(config, data.train.images, data.noisy_labels, 10,
                      test_images=data.test.images, test_labels=data.test.labels)
    until = config.epochs if args.until is None else min(args.until, config.epochs)

    rows_given = (np.arange(len(data.noisy_labels)), data.noisy_labels)
    given_probabilities = []  # each fitting epoch's pass: the given label's predicted probability

    def scored_scales() -> dict:
        if not config.fits_mixture(trainer.epoch):
            return {}
        evaluation = trainer.evaluation_pass()
        given_probabilities.append(evaluation.probs[rows_given])
        return {**scale_scores(evaluation.losses, data.noisy_labels, data.train.labels, seed=config.seed),
                "noise_share_confident_joint": confident_joint_noise_share(data.noisy_labels, evaluation.probs),
                "noise_concentration": noise_concentration(data.noisy_labels, evaluation.probs),
                "flip_reciprocity": flip_reciprocity(data.noisy_labels, evaluation.probs)}

    rows = []
    while trainer.epoch < until:
        scores = scored_scales()
        neighbors = trainer.mixing_neighbors() if config.fits_mixture(trainer.epoch) else None
        if neighbors is not None:
            scores.update(mixing_scores(trainer.p_clean, neighbors, trainer.member_weights(neighbors),
                                        trainer.soft_labels, data.noisy_labels, data.train.labels))
        row = trainer.train_epoch(neighbors)
        rows.append({"epoch": row["epoch"], "phase": row["phase"], "test_acc": row["test_acc"], **scores})
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    if until < config.epochs and config.fits_mixture(until):
        rows.append({"epoch": until, "phase": "scored, not trained", **scored_scales()})
        print(rows[-1], flush=True)
    final_probs = trainer.evaluation_pass().probs if args.samples or until == config.epochs else None
    if args.samples:
        write_final_arrays(args.samples, data, trainer.outputs().soft_label, trainer.p_clean, final_probs)
    suffix = "".join(f"-{key}={value}" for key, value in overrides.items())
    suffix += f"-until{until}" if until < config.epochs else ""
    suffix += f"-s{args.seed}" if args.seed else ""
    out = args.out / f"{args.setting}-e{args.epochs}{suffix}.json"
    result = {"setting": args.setting, "config": config.to_dict(), "code": code, "machine": machine_record(),
              "epochs": rows}
    if until == config.epochs:  # a whole run: its final model against the passes before it
        result["label_quality_epoch_average"] = epoch_average_auroc(
            given_probabilities, final_probs[rows_given], data.noisy_labels, data.train.labels)
        print(f"label_quality_epoch_average {result['label_quality_epoch_average']}", flush=True)
    write_json_atomic(result, out)
    return out


if __name__ == "__main__":
    main()
