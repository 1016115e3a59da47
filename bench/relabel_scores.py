"""How well does the relabel flow judge newly arrived labels? Scores its candidate rules on an
incoming batch whose TRUE labels are known.

    .venv/bin/python bench/relabel_scores.py --setting fmnist20k-sym50 --epochs 20

Trains a mixnn run on the suite's setting (its 20,000 training images and noisy labels, seed
``--seed``), then takes ``--incoming`` other Fashion-MNIST training images (none of the 20,000),
gives them labels corrupted the same way (mode and rate of the setting, another seed) and
scores them as ``mixnn_core.relabel`` does: each new sample gets the model's prediction q and
the share h of its K nearest training samples (in the final model's feature space, the run's
index method) suggesting each class. Candidates, each at every K of ``--neighbors``:

- "given label weighed by the training run's noise" (``mixnn_core.label_posterior``): Bayes' rule
  with the given label as evidence, ``opinion * P(given | true)``, P from the training run's own
  confident joint and nothing from the scored batch; the opinion is the mean of q tempered to
  the training run's temperature (``SampleOutputs.suggestion_temperature``) and h (the relabel
  flow's since the thirty-eighth pass, ``relabel.class_opinion``), the mean (q + h) / 2
  untempered, or the tempered q alone. Suggested its argmax, label_quality its mass on the
  given class, flagged where the suggestion differs from the given label (the relabel flow's,
  ``relabel.verdict``), or, for the flow's opinion, where its probability of being wrong reaches
  the training run's flag cut (``review_flags``; measured in the thirty-ninth pass, whose result
  files name it the flow's, and not adopted);
- "mean of prediction and vote" (the relabel flow's until the thirty-eighth pass): soft label
  (q + h) / 2, flagged where its argmax differs from the given label, label_quality its mass on
  the given class;
- "prediction alone" / "vote alone": q / h in its place (the prediction's does not depend on K);
- "mean, with the training manifest's rules of the 35th-37th passes": (q + h) / 2 changed only
  where confident learning counts the label wrong, flagged as a mixnn run's manifest was then
  (``suggestion_rules.mixture_flags``, the mixture fitted to q's loss on this batch) and ranked
  by q on the given class.

The training run's own labels are scored under its manifest's rules and those before them
(confident learning's count on the soft labels; the mixture flags), ``run_rules``.

Per candidate: label recovery (suggestion = true label), detection precision / recall / F1 of
the flags and AUROC of label_quality against the truly wrong given labels. Nothing is tuned;
the incoming batch is not the test set, and the trained run's own figures (test accuracy,
recovery) are recorded beside it. Written to ``--out`` (.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import Split, fashion_mnist, subset_rows  # noqa: E402
from bench.suggestion_rules import mixture_flagged_outputs, weighed_mixture_outputs  # noqa: E402
from bench.suite import SETTINGS, code_version, config_assignments, load, machine_record  # noqa: E402
from bench.timestamps import utc_now  # noqa: E402
from mixnn_core.confident_learning import counted_suggestions  # noqa: E402
from mixnn_core.config import cpu_preset  # noqa: E402
from mixnn_core.files import write_json_atomic  # noqa: E402
from mixnn_core.knn import build_index  # noqa: E402
from mixnn_core.label_posterior import given_label_posterior, run_noise_model, tempered  # noqa: E402
from mixnn_core.noise import inject_noise  # noqa: E402
from mixnn_core.outputs import SampleOutputs, outputs_metrics, sample_outputs  # noqa: E402
from mixnn_core.relabel import (  # noqa: E402
    ExportedModel,
    class_opinion,
    features_and_predictions,
    neighbor_votes,
    verdict,
)
from mixnn_core.trainer import Trainer  # noqa: E402

WEIGHED = "given label weighed by the training run's noise"
PRODUCT = WEIGHED + ", mean of tempered prediction and vote (the relabel flow's)"
MEAN = "mean of prediction and vote (the relabel flow's until the thirty-eighth pass)"


def candidate_outputs(given: np.ndarray, probs: np.ndarray, votes: np.ndarray, exported: ExportedModel,
                      flag_cut: float) -> dict[str, SampleOutputs]:
    """Each candidate's verdict on the incoming samples (module docstring); ``probs`` q and
    ``votes`` h are (N, C) rows summing to 1; the noise model (``likelihood``) and
    ``temperature`` are those of the training run ``exported``, ``flag_cut`` its manifest's."""
    unknown = np.full(len(given), np.nan)
    mean = (probs + votes) / 2
    opinion = class_opinion(exported, given, probs, votes)
    return {
        PRODUCT: verdict(exported, given, probs, votes),
        PRODUCT + ", flagged from the training run's flag cut (not adopted)": sample_outputs(
            given, opinion, unknown, wrong_probability=(1.0 - opinion[np.arange(len(given)), given]).clip(0, 1),
            cut=flag_cut),
        MEAN: sample_outputs(given, mean, unknown),
        "prediction alone": sample_outputs(given, probs, unknown),
        "vote alone": sample_outputs(given, votes, unknown),
        "mean, with the training manifest's rules of the 35th-37th passes": mixture_flagged_outputs(
            given, mean, unknown, counted_suggestions(given, mean), probs),
        WEIGHED + ", mean": sample_outputs(given, given_label_posterior(given, mean, exported.likelihood), unknown),
        WEIGHED + ", tempered prediction": sample_outputs(
            given, given_label_posterior(given, tempered(probs, exported.temperature), exported.likelihood),
            unknown),
    }


def incoming_batch(setting_name: str, size: int, seed: int) -> tuple[Split, np.ndarray]:
    """``size`` Fashion-MNIST training images outside the setting's training subset, with their
    true labels and labels corrupted by the setting's noise (seed ``seed``)."""
    setting = SETTINGS[setting_name]
    if setting.dataset != "fashion_mnist" or setting.n_train is None or not isinstance(setting.noise, tuple):
        raise ValueError(f"{setting_name}: an incoming batch needs a Fashion-MNIST subset setting with injected noise")
    train, _ = fashion_mnist()
    outside = np.setdiff1d(np.arange(len(train.labels)), subset_rows(len(train.labels), setting.n_train, seed=0))
    chosen = np.sort(np.random.default_rng(seed).choice(outside, min(size, len(outside)), replace=False))
    batch = Split(train.images[chosen], train.labels[chosen])
    mode, rate = setting.noise
    noisy, _ = inject_noise(batch.labels, 10, mode, rate, seed, dataset=setting.dataset if mode == "asymmetric" else None)
    return batch, noisy


def exported_model(trainer: Trainer) -> tuple[ExportedModel, SampleOutputs, np.ndarray]:
    """A trained run as the relabel flow reads it back from its files (``load_exported_model``):
    the model, the index of its final features, its manifest's suggested labels; its outputs and
    its final predictions (N, C) on the training samples."""
    config = trainer.config
    evaluation = trainer.evaluation_pass()
    outputs = trainer.outputs(evaluation.probs)
    card = {"input_shape": list(trainer.input_shape), "normalization": trainer.normalization,
            "num_classes": trainer.num_classes}
    index = build_index(evaluation.features, config.knn_method, normalize=config.normalize_features)
    exported = ExportedModel(trainer.model.eval(), card, index, outputs.suggested_label, config.normalize_features,
                             run_noise_model(trainer.given_labels, outputs.soft_label), outputs.suggestion_temperature)
    return exported, outputs, evaluation.probs


def training_run_rules(given: np.ndarray, true: np.ndarray, outputs: SampleOutputs, final_probs: np.ndarray,
                       seed: int) -> dict[str, dict]:
    """The training run's own labels (N,) under its manifest's rules (``outputs``: the final
    predictions ``final_probs`` tempered, the given label weighed, since the thirty-eighth pass;
    the posterior's expected-F1 flags since the thirty-ninth) and under the rules before them:
    confident learning's count on the soft labels as the suggestion (until the thirty-eighth
    pass), the mixture flags (thirty-fifth to thirty-eighth)."""
    soft, p_clean = outputs.soft_label, outputs.p_clean
    before = mixture_flagged_outputs(given, soft, p_clean, counted_suggestions(given, soft), final_probs, seed)
    return {"confident learning on the soft labels (until the thirty-eighth pass)": outputs_metrics(before, true),
            "given label weighed, mixture flags (thirty-eighth pass)": outputs_metrics(
                weighed_mixture_outputs(given, soft, p_clean, final_probs, seed), true),
            "given label weighed, expected-F1 flags (the manifest's)": outputs_metrics(outputs, true)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed, as the suite's")
    parser.add_argument("--incoming", type=int, default=10000, help="size of the incoming batch")
    parser.add_argument("--neighbors", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig overrides")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = config_assignments(parser, args.set)
    code = code_version()
    setting = SETTINGS[args.setting]
    data = load(setting, args.seed)
    incoming, incoming_given = incoming_batch(args.setting, args.incoming, seed=args.seed + 1)
    config = cpu_preset(args.epochs, "mixnn", **{"seed": args.seed, **setting.train_options(), **overrides})
    trainer = Trainer(config, data.train.images, data.noisy_labels, 10, test_images=data.test.images,
                      test_labels=data.test.labels, true_labels=data.train.labels)
    history = trainer.fit()
    exported, outputs, final_probs = exported_model(trainer)
    run_rules = training_run_rules(data.noisy_labels, data.train.labels, outputs, final_probs, args.seed)
    for name, row in run_rules.items():
        print(f"training run, {name:40s} recovery {row['label_recovery']:.4f} F1 {row['f1']:.4f}", flush=True)
    features, probs = features_and_predictions(exported, incoming.images)  # once: q does not depend on K
    scores = {}
    for k in args.neighbors:
        votes = neighbor_votes(exported, features, k)
        scores[k] = {name: outputs_metrics(verdict, incoming.labels)
                     for name, verdict in candidate_outputs(incoming_given, probs, votes, exported,
                                                            outputs.flag_cut).items()}
        for name, row in scores[k].items():
            print(f"K={k:3d} {name:52s} recovery {row['label_recovery']:.4f} F1 {row['f1']:.4f} "
                  f"AUROC {row['auroc']:.4f}", flush=True)
    result = {"setting": args.setting, "epochs": args.epochs, "seed": args.seed, "overrides": overrides,
              "incoming": {"n": len(incoming.labels), "noise_seed": args.seed + 1,
                           "wrong_fraction": float((incoming_given != incoming.labels).mean()),
                           "given_labels_right": float((incoming_given == incoming.labels).mean())},
              "run": {"test_acc_last": history[-1]["test_acc"],
                      **outputs_metrics(outputs, data.train.labels)},
              "run_rules": run_rules, "suggestion_temperature": outputs.suggestion_temperature,
              "knn_method": config.knn_method, "scores_by_k": scores, "code": code,
              "machine": machine_record(), "finished_at": utc_now()}
    out = args.out or ROOT / "bench" / "results" / f"relabel_scores-{args.setting}-e{args.epochs}-s{args.seed}.json"
    write_json_atomic(result, out)
    return result


if __name__ == "__main__":
    main()
