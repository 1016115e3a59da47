"""Which labels should a run change? Scores rules on saved per-sample arrays, with TRUE labels.

    .venv/bin/python bench/suggestion_rules.py /work/samples/cifar10n-aggre.npz ...

Reads the ``--samples`` files of ``bench/mixing_diagnostics.py`` and, for every rule, counts
the labels it changes, how many of those it fixes and breaks, and the recovery of the manifest
it would write (a label not changed keeps the given one). The rules have no tuned threshold;
this script measures them, it must not tune one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixnn_core.confident_learning import confident_joint, label_issues  # noqa: E402
from mixnn_core.files import write_json_atomic  # noqa: E402
from mixnn_core.gmm import clean_probability, fit_mixture_per_class, normalize_losses  # noqa: E402
from mixnn_core.label_posterior import weighed_posterior  # noqa: E402
from mixnn_core.outputs import SampleOutputs, sample_outputs  # noqa: E402


def given_label_losses(given_labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Cross-entropy (N,) of each sample's predicted class probabilities ``probs`` (N, C)
    against its GIVEN label (probabilities clipped at 1e-12, so at most about 27.6)."""
    given = np.asarray(given_labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != given.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = {given.shape[0]}, got {probs.shape}")
    return -np.log(np.clip(probs[np.arange(given.shape[0]), given], 1e-12, None))


def given_label_clean_probability(given_labels: np.ndarray, probs: np.ndarray, seed: int = 0) -> np.ndarray:
    """Probability (N,) that each GIVEN label is clean: the method's two-component mixture
    (``mixnn_core.gmm.clean_probability``) fitted to the model's cross-entropy on the given
    labels (``given_label_losses``). Unlike a run's ``p_clean``, whose losses are taken against
    the corrected labels, it speaks about the label the user gave."""
    return clean_probability(given_label_losses(given_labels, probs), seed=seed)


def mixture_flags(given: np.ndarray, soft: np.ndarray, probs: np.ndarray, suggested: np.ndarray,
                  seed: int = 0) -> np.ndarray:
    """A mixnn run's flags of the thirty-fifth to thirty-eighth passes: every label the suggestion
    ``suggested`` changes, and those whose soft label prefers another class and that the mixture
    fitted to the final predictions' loss on the given label (``given_label_clean_probability``,
    ``seed``) calls noisy."""
    differs = soft[np.arange(len(given)), given] < soft.max(axis=1)
    return (differs & (given_label_clean_probability(given, probs, seed) < 0.5)) | (suggested != given)


def mixture_flagged_outputs(given: np.ndarray, soft: np.ndarray, p_clean: np.ndarray, suggested: np.ndarray,
                            probs: np.ndarray, seed: int = 0) -> SampleOutputs:
    """``sample_outputs`` of the suggestion ``suggested`` with ``mixture_flags``: a mixnn run's
    outputs as the thirty-fifth to thirty-eighth passes flagged them, label_quality the final
    prediction ``probs`` on the given class."""
    outputs = sample_outputs(given, soft, p_clean, suggested, probs)
    return replace(outputs, is_label_issue=mixture_flags(given, soft, probs, suggested, seed))


def weighed_mixture_outputs(given: np.ndarray, soft: np.ndarray, p_clean: np.ndarray, probs: np.ndarray,
                            seed: int = 0) -> SampleOutputs:
    """A mixnn run's outputs as the thirty-eighth pass exported them: the weighed suggestion
    (``label_posterior.weighed_posterior``) with ``mixture_flagged_outputs``."""
    suggested = weighed_posterior(given, probs, soft)[0].argmax(axis=1)
    return mixture_flagged_outputs(given, soft, p_clean, suggested, probs, seed)


def given_label_clean_probability_per_class(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``mixnn_core.outputs.given_label_clean_probability`` with one mixture per given class."""
    return fit_mixture_per_class(normalize_losses(given_label_losses(given, probs)), given).p_clean


def changes_by_rule(given: np.ndarray, soft: np.ndarray, probs: np.ndarray) -> dict:
    """Boolean masks of the labels each rule would change to argmax(soft)."""
    rows = np.arange(len(given))
    suggested = soft.argmax(axis=1)
    differs = suggested != given
    margin = soft[rows, suggested] - soft[rows, given]  # 0 where the suggestion is the given label

    def top(count: int) -> np.ndarray:
        chosen = np.zeros(len(given), bool)
        order = np.argsort(-margin, kind="stable")[:max(0, count)]
        chosen[order] = True
        return chosen & differs

    p_given = given_label_clean_probability(given, probs)
    p_given_per_class = given_label_clean_probability_per_class(given, probs)
    joint = confident_joint(given, soft)
    return {
        "argmax differs (the rule before 2026-11-30)": differs,
        "confident learning (the product's rule)": label_issues(given, soft),
        "differs and given-label mixture p < 0.5": differs & (p_given < 0.5),
        "same, one mixture per given class": differs & (p_given_per_class < 0.5),
        "top n, n = confident-joint estimate": top(int(joint.sum() - np.trace(joint))),
        "top n, n = given-label mixture estimate": top(int(round((1 - p_given).sum()))),
    }


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Given labels, true labels, suggestion soft labels and final predictions of a ``--samples``
    file of ``bench/mixing_diagnostics.py``."""
    arrays = np.load(path, allow_pickle=False)
    return arrays["given"], arrays["true"], arrays["suggestion"], arrays["probs"]


def check_reproduced(figures: dict, row: dict, source: str) -> None:
    """ValueError naming ``source`` and the first of ``figures`` that differs from the suite
    ``row``'s own (beyond 1e-9): a row is rescored only from arrays that reproduce it."""
    for field, value in figures.items():
        if not np.isclose(value, row[field], rtol=0, atol=1e-9):
            raise ValueError(f"{source} does not reproduce the row: {field} {value} vs {row[field]}")


def score_samples(paths: list[Path], score: Callable[..., dict], out: Path | None,
                  reference: tuple[str, str] | None = None) -> dict:
    """``{file name: score(given, true, soft, probs)}`` over ``--samples`` files, also written to
    ``out`` (.json) when given; each file's label counts printed before ``score`` prints its rows.
    With ``reference`` (rule name, figure), last each rule's figure against that rule's over all
    files: mean difference, and in how many files it is above / below (``rule_differences``)."""
    results = {}
    for path in paths:
        given, true, soft, probs = read_samples(path)
        print(f"{path.name}: {len(given)} samples, {int((given != true).sum())} wrong")
        results[path.name] = score(given, true, soft, probs)
    if reference:
        differences = rule_differences(results, *reference)
        print(f"{reference[1]} against '{reference[0]}' over {len(results)} files:")
        for name, row in differences.items():
            print(f"  {name:90s} mean {row['mean']:+.4f}  above {row['above']:2d}  below {row['below']:2d}")
        results = {"files": results, f"{reference[1]} against {reference[0]}": differences}
    if out:
        write_json_atomic(results, out)
    return results


def rule_differences(results: dict, reference: str, figure: str) -> dict:
    """Per rule of ``results`` ({file: {rule: {figure: value}}}): the mean over files of its
    ``figure`` minus the ``reference`` rule's, and the number of files where it is above / below
    (by more than 1e-12)."""
    rules = next(iter(results.values())).keys()
    rows = {}
    for name in rules:
        gaps = np.array([scores[name][figure] - scores[reference][figure] for scores in results.values()])
        rows[name] = {"mean": float(gaps.mean()), "above": int((gaps > 1e-12).sum()),
                      "below": int((gaps < -1e-12).sum())}
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+")
    args = parser.parse_args(argv)
    results = {}
    for path in args.samples:
        given, true, soft, probs = read_samples(path)
        suggested = soft.argmax(axis=1)
        print(f"{path.name}: {len(given)} samples, {int((given != true).sum())} wrong, given labels "
              f"{(given == true).mean():.4f} right")
        for name, change in changes_by_rule(given, soft, probs).items():
            manifest = np.where(change, suggested, given)
            row = {"changed": int(change.sum()), "fixed": int((change & (given != true) & (suggested == true)).sum()),
                   "broken": int((change & (given == true)).sum()), "recovery": float((manifest == true).mean())}
            results[(path.name, name)] = row
            print(f"  {name:42s} changed {row['changed']:6d} fixed {row['fixed']:6d} broken {row['broken']:6d} "
                  f"recovery {row['recovery']:.4f}")
    return results


if __name__ == "__main__":
    main()
