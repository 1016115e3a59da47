"""Can a weak model's noise count be corrected for its own mistakes? A diagnostic that reads the
TRUE labels.

    .venv/bin/python bench/mixing_diagnostics.py --setting cifar10n-worse --until 4 \
        --samples samples/cifar10n-worse-until4.npz   # and so on for each setting
    .venv/bin/python bench/noise_share_estimates.py samples/*-until4.npz

Reads the predictions of the first mixture fit's evaluation pass (``--samples`` of
``mixing_diagnostics.py --until 4``) and prints, next to the true share of wrong given labels:

- ``disagreement``: share of samples whose predicted class is not the given label;
- ``confident_joint``: confident learning's count (what ``noise_estimate="confident_joint"`` uses);
- ``model_error``: share whose predicted class is not the TRUE one (an oracle: no run knows it);
- ``corrected``: (disagreement - model_error) / (1 - model_error), the noise share if the model's
  mistakes were independent of the label noise; with the oracle error, the best any estimate of
  the model's error could do with that correction (NaN for a model wrong on every sample);
- ``predicts_given_when_wrong``: share of wrongly labelled samples whose predicted class IS the
  wrong given label: the model has learned the noise there, which the correction cannot see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixnn_core.confident_learning import confident_joint_noise_share  # noqa: E402
from mixnn_core.ingest import load_npz  # noqa: E402

PREDICTION_ARRAYS = ("given", "true", "probs")  # the arguments of noise_share_estimates, in order


def noise_share_estimates(given: np.ndarray, true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The estimates above for ``probs`` (n, classes) of samples with ``given`` and ``true`` labels."""
    predicted = probs.argmax(axis=1)
    wrong = given != true
    disagreement = float((predicted != given).mean())
    model_error = float((predicted != true).mean())
    return {
        "wrong": float(wrong.mean()),
        "disagreement": disagreement,
        "confident_joint": confident_joint_noise_share(given, probs),
        "model_error": model_error,
        "corrected": (disagreement - model_error) / (1.0 - model_error) if model_error < 1 else float("nan"),
        "predicts_given_when_wrong": float((predicted[wrong] == given[wrong]).mean()) if wrong.any() else 0.0,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+", help="npz files of mixing_diagnostics.py --samples")
    args = parser.parse_args(argv)
    results = {}
    for path in args.samples:
        _, arrays = load_npz(path, PREDICTION_ARRAYS)
        missing = [name for name in PREDICTION_ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)} array(s); pass the --samples file "
                             "of mixing_diagnostics.py")
        results[path.stem] = noise_share_estimates(*(arrays[name] for name in PREDICTION_ARRAYS))
        print(f"{path.stem:32s} " + "  ".join(f"{key} {value:.3f}" for key, value in results[path.stem].items()),
              flush=True)
    return results


if __name__ == "__main__":
    main()
