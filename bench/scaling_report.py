"""Markdown tables for docs/scaling.md from bench/results/scaling.json (made by bench/scaling.py).

    .venv/bin/python bench/scaling_report.py bench/results/scaling.json

For each stage: the measured seconds per size, the fitted growth t = a * N^b (least squares in
log-log space), and t extrapolated to 1 M and 100 M samples on this machine's kind (2 CPU cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

STAGES = {
    "ingest_s": "ingestion to shards",
    "load_s": "loading the shards",
    "eval_pass_s": "evaluation pass (features + losses)",
    "feature_write_s": "feature write (Parquet)",
    "exact_build_s": "exact index build",
    "exact_query_s": "exact all-vs-all query (k = 1)",
    "hnsw_build_s": "HNSW build (1 thread)",
    "hnsw_query_s": "HNSW all-vs-all query (k = 1)",
    "ivf_build_s": "IVF build (k-means cells)",
    "ivf_query_s": "IVF all-vs-all query (k = 1)",
    "mixture_fit_s": "mixture fit",
    "ce_epoch_s": "training epoch, ce",
    "mixnn_train_s": "training epoch, mixnn (mixing only)",
    "peak_rss_mb": "peak memory of the process (MB)",
}
PROJECTED = (1_000_000, 100_000_000)


def growth(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(a, b) of values = a * sizes^b, fitted in log-log space."""
    b, log_a = np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-6)), 1)
    return float(np.exp(log_a)), float(b)


def markdown(results: dict) -> str:
    rows = results["rows"]
    sizes = np.array([row["n"] for row in rows], dtype=float)
    header = ["stage"] + [f"N={int(n):,}" for n in sizes] + ["growth N^b", "1 M (proj.)", "100 M (proj.)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for key, name in STAGES.items():
        if any(key not in row for row in rows):  # a stage measured only by later versions
            continue
        values = np.array([row[key] for row in rows], dtype=float)
        a, b = growth(sizes, values)
        projected = [a * n ** b for n in PROJECTED]
        cells = [name] + [f"{v:.3g}" for v in values] + [f"{b:.2f}"] + [f"{p:.3g}" for p in projected]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
