"""How far does fitting the temperature on some rows move it from the fit on all of them?

    .venv/bin/python bench/temperature_rows.py bench/results/runs/arrays/fmnist60k-sym50-mixnn-e20-s0.npz ...

For each saved run's final arrays (the ``--arrays`` files of ``bench/suite.py``: given labels,
final predictions), the temperature ``label_posterior.fit_temperature`` fits on all rows, on
the evenly spaced rows it reads by default (``TEMPERATURE_FIT_ROWS``) and on random subsets of
the same size (seeds 100-104, for the spread a subset has), with what each does to the
posterior probability that the given label is right (``posterior_clean_probability``, the
p_clean the default ``clean_probability`` reads) and the seconds one such call takes (fastest
of three). Uses no true label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scaling import fastest  # noqa: E402
from mixnn_core.label_posterior import (  # noqa: E402
    TEMPERATURE_FIT_ROWS,
    evenly_spaced_rows,
    fit_temperature,
    given_label_posterior,
    run_noise_model,
    tempered,
)

RANDOM_SEEDS = range(100, 105)


def given_label_p_clean(given: np.ndarray, probs: np.ndarray, likelihood: np.ndarray,
                        temperature: float) -> np.ndarray:
    tempered_posterior = given_label_posterior(given, tempered(probs, temperature), likelihood)
    return tempered_posterior[np.arange(given.size), given]


def subset_effect(given: np.ndarray, probs: np.ndarray, likelihood: np.ndarray, rows: np.ndarray,
                  full_temperature: float, full_p_clean: np.ndarray) -> dict:
    """The temperature fitted on ``rows`` relative to the full fit, and the largest and mean
    absolute change it makes to every sample's posterior p_clean."""
    temperature = fit_temperature(given[rows], probs[rows], likelihood, max_rows=given.size)
    change = np.abs(given_label_p_clean(given, probs, likelihood, temperature) - full_p_clean)
    return {"temperature": temperature, "relative_change": temperature / full_temperature - 1.0,
            "max_abs_p_clean_change": float(change.max()), "mean_abs_p_clean_change": float(change.mean())}


def measure(path: Path, at_most: int) -> dict:
    arrays = np.load(path, allow_pickle=False)
    given, probs = arrays["given"], arrays["probs"]
    likelihood = run_noise_model(given, probs)
    full = fit_temperature(given, probs, likelihood, max_rows=given.size)
    full_p_clean = given_label_p_clean(given, probs, likelihood, full)
    rng_rows = [np.sort(np.random.default_rng(seed).choice(given.size, at_most, replace=False))
                for seed in RANDOM_SEEDS] if given.size > at_most else []
    return {
        "file": path.name, "n": int(given.size), "rows": min(at_most, int(given.size)),
        "full_temperature": full,
        "evenly_spaced": subset_effect(given, probs, likelihood, evenly_spaced_rows(given.size, at_most),
                                       full, full_p_clean),
        "random": [subset_effect(given, probs, likelihood, rows, full, full_p_clean) for rows in rng_rows],
        "fit_seconds_all_rows": fastest(3, fit_temperature, given, probs, likelihood, max_rows=given.size)[1],
        "fit_seconds_at_most": fastest(3, fit_temperature, given, probs, likelihood, max_rows=at_most)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arrays", nargs="+", type=Path, help="--arrays .npz files of bench/suite.py")
    parser.add_argument("--rows", type=int, default=TEMPERATURE_FIT_ROWS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "temperature_rows.json")
    args = parser.parse_args()
    results = []
    for path in args.arrays:
        result = measure(path, args.rows)
        results.append(result)
        spread = [r["relative_change"] for r in result["random"]]
        print(f"{result['file']}: N {result['n']}, T {result['full_temperature']:.4f}; "
              f"{result['rows']} evenly spaced rows {result['evenly_spaced']['relative_change']:+.4f} "
              f"(p_clean max |change| {result['evenly_spaced']['max_abs_p_clean_change']:.4f}, "
              f"mean {result['evenly_spaced']['mean_abs_p_clean_change']:.5f})"
              + (f"; random subsets {min(spread):+.4f}..{max(spread):+.4f}" if spread else "")
              + f"; fit {result['fit_seconds_all_rows']:.3f} s -> {result['fit_seconds_at_most']:.3f} s")
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
