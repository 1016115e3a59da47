"""Tables, target checks and plots of the suite's results, written into BENCHMARKS.md.

    .venv/bin/python bench/report.py [--runs bench/results/runs] [--out BENCHMARKS.md]

Replaces the part of ``--out`` between the ``<!-- generated -->`` markers (the rest is written
by hand) and draws the plots into ``bench/results/``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timestamps import seconds_since_epoch  # noqa: E402
from mixnn_core.files import read_json  # noqa: E402

START, END = "<!-- generated: start -->", "<!-- generated: end -->"
METHOD_ORDER = ("ce", "mixup", "cleanlab", "mixnn")
MIXING_STEPS = ("evaluation_pass", "feature_write", "mixture_fit", "neighbor_search", "correction")
COLUMNS = [("test_acc_last", "test acc (last)", 100), ("test_acc_best_on_test", "best on test*", 100),
           ("label_recovery", "label recovery", 100), ("precision", "det. precision", 1),
           ("recall", "det. recall", 1), ("f1", "det. F1", 1), ("auroc", "AUROC", 1),
           ("wall_seconds", "wall s", 1)]


def load_runs(folder: Path) -> list[dict]:
    return [read_json(path) for path in sorted(folder.glob("*.json"))]


def fmt(value, scale: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = value * scale
    return f"{value:.0f}" if scale == 1 and value > 50 else f"{value:.1f}" if scale == 100 else f"{value:.3f}"


def group_key(run: dict) -> tuple:
    return run["setting"], run["epochs"], run["seed"], run.get("tag", "")


def results_table(runs: list[dict]) -> str:
    lines = []
    groups = sorted({group_key(run) for run in runs})
    for setting, epochs, seed, tag in groups:
        rows = sorted((run for run in runs if group_key(run) == (setting, epochs, seed, tag)),
                      key=lambda run: METHOD_ORDER.index(run["method"]))
        noise = rows[0]["noise"]
        title = f"{setting}, {epochs} epochs, seed {seed}" + (f", {tag} {rows[0]['overrides']}" if tag else "")
        lines += [f"#### {title}", "",
                  f"{rows[0]['n_train']} training samples, {100 * noise['wrong_fraction']:.1f} % of the given "
                  f"labels wrong.", "",
                  "| method | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
                  "| --- |" + " ---: |" * len(COLUMNS)]
        for run in rows:
            lines.append(f"| {run['method']} | " + " | ".join(fmt(run.get(key), scale) for key, _, scale in COLUMNS)
                         + " |")
        lines.append("")
    return "\n".join(lines)


def runs_by_seed(runs: list[dict], setting: str, epochs: int, method: str) -> dict[int, dict]:
    """The untagged runs of one (setting, epochs, method), by seed."""
    return {run["seed"]: run for run in runs if not run.get("tag")
            and (run["setting"], run["epochs"], run["method"]) == (setting, epochs, method)}


def by(runs: list[dict], setting: str, epochs: int, method: str, seed: int = 0) -> dict | None:
    return runs_by_seed(runs, setting, epochs, method).get(seed)


def paired_differences(runs: list[dict], setting: str, epochs: int, key: str) -> dict[int, float]:
    """mixnn minus ce in ``key``, per seed that has both (a seed fixes the noisy labels, the
    initialisation and the batch order, so the pair differs only in the method)."""
    mixnn, ce = (runs_by_seed(runs, setting, epochs, method) for method in ("mixnn", "ce"))
    return {seed: mixnn[seed][key] - ce[seed][key] for seed in sorted(mixnn.keys() & ce.keys())}


def mean_sd(values: list[float], scale: float) -> str:
    """``mean ± sample standard deviation`` of ``values`` times ``scale``."""
    values = [value * scale for value in values]
    digits = 1 if scale == 100 else 3
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeds_table(runs: list[dict]) -> str:
    """Settings run with two or more seeds: each method's mean ± standard deviation over its
    seeds, then mixnn minus ce seed by seed. One seed's row is one draw of the noisy labels
    and of the training randomness; differences smaller than the spread here are not findings."""
    lines = ["| setting | method | seeds | test acc (last) | label recovery | det. F1 | AUROC |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    differences = ["| setting | seeds | mixnn - ce, test acc (each seed) | mean | "
                   "mixnn - ce, recovery (each seed) | mean |", "| --- | --- | --- | ---: | --- | ---: |"]
    untagged = [run for run in runs if not run.get("tag")]
    for setting, epochs in sorted({(run["setting"], run["epochs"]) for run in untagged}):
        for method in METHOD_ORDER:
            seeded = runs_by_seed(runs, setting, epochs, method)
            if len(seeded) < 2:
                continue
            rows = list(seeded.values())
            lines.append(f"| {setting} e{epochs} | {method} | {', '.join(map(str, sorted(seeded)))} | " +
                         " | ".join(mean_sd([run[key] for run in rows], scale) for key, scale in
                                    (("test_acc_last", 100), ("label_recovery", 100), ("f1", 1),
                                     ("auroc", 1))) + " |")
        paired = [paired_differences(runs, setting, epochs, key) for key in ("test_acc_last", "label_recovery")]
        if len(paired[0]) >= 2:
            cells = [f"{', '.join(f'{100 * d:+.1f}' for d in per_seed.values())} | "
                     f"{100 * statistics.mean(per_seed.values()):+.2f}" for per_seed in paired]
            differences.append(f"| {setting} e{epochs} | {', '.join(map(str, paired[0]))} | {' | '.join(cells)} |")
    return "\n".join(lines + ["", *differences])


def first_noise_strength(run: dict) -> float | None:
    """The noise strength a mixnn run read at its first mixture fit (None before any fit)."""
    return next((row["noise_strength"] for row in run["history"] if row.get("noise_strength") is not None), None)


def noise_strength_table(runs: list[dict]) -> str:
    """Per setting, the noise strength the untagged mixnn runs read at their first mixture fit,
    seed by seed, beside the odds of a wrong label the run's true share gives (both capped at 1):
    how far the number a run's report shows is from the noise it stands for."""
    lines = ["| setting | seeds | labels wrong | odds of a wrong label (cap 1) | noise strength read |",
             "| --- | --- | --- | --- | --- |"]
    untagged = {(run["setting"], run["epochs"]) for run in runs if not run.get("tag") and run["method"] == "mixnn"}
    for setting, epochs in sorted(untagged):
        seeded = {seed: (run, first_noise_strength(run))
                  for seed, run in sorted(runs_by_seed(runs, setting, epochs, "mixnn").items())}
        seeded = {seed: pair for seed, pair in seeded.items() if pair[1] is not None}
        if not seeded:
            continue
        wrong = [1 - run["given_label_accuracy"] for run, _ in seeded.values()]
        cells = [", ".join(f"{share:.1%}" for share in wrong),
                 ", ".join(f"{min(1.0, share / (1 - share)):.2f}" for share in wrong),
                 ", ".join(f"{strength:.3f}" for _, strength in seeded.values())]
        lines.append(f"| {setting} e{epochs} | {', '.join(map(str, seeded))} | {' | '.join(cells)} |")
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "**MISS**")


def target_checks(runs: list[dict]) -> str:
    """The issue's targets, each PASS / MISS / not measured, from the untagged seed-0 runs, and,
    where two or more seeds ran both mixnn and ce, the mean over seeds of mixnn minus ce."""
    lines = ["| target | setting | measured | verdict |", "| --- | --- | --- | --- |"]
    groups = sorted({(run["setting"], run["epochs"]) for run in runs if not run.get("tag")})
    for setting, epochs in groups:
        mixnn, ce, cleanlab = (by(runs, setting, epochs, m) for m in ("mixnn", "ce", "cleanlab"))
        if mixnn is None or ce is None:
            continue
        where = f"{setting} e{epochs}"
        others = [run for run in (ce, cleanlab) if run is not None]
        names = "/".join(run["method"] for run in others)
        best_other = max(run["test_acc_last"] for run in others)
        lines.append(f"| test acc >= {names} | {where} | {100 * mixnn['test_acc_last']:.1f} vs "
                     f"{100 * best_other:.1f} | {verdict(mixnn['test_acc_last'] >= best_other)} |")
        lines += seed_mean_target(runs, setting, epochs, "test_acc_last", "test acc >=", verdict, strict=False)
        if mixnn["noise"]["wrong_fraction"] == 0:
            continue
        for key, label in (("label_recovery", "recovery"), ("f1", "detection F1"), ("auroc", "AUROC")):
            best = max(run[key] for run in others)
            lines.append(f"| {label} > {names} | {where} | {mixnn[key]:.4f} vs {best:.4f} | "
                         f"{verdict(mixnn[key] > best)} |")
        lines += seed_mean_target(runs, setting, epochs, "label_recovery", "recovery >", verdict, strict=True)
        clean_setting = setting.rsplit("-", 1)[0] + "-clean"
        clean = by(runs, clean_setting, epochs, "ce")
        if clean is not None and any(s in setting for s in ("sym80", "asym40")):
            closed, gap = share_of_gap_closed(mixnn["test_acc_last"], ce["test_acc_last"], clean["test_acc_last"])
            lines.append(f"| closes >= half the ce-to-clean gap | {where} | {closed:.2f} of "
                         f"{100 * gap:.1f} points | {verdict(closed >= 0.5)} |")
            lines += seed_mean_gap_target(runs, setting, epochs, clean["test_acc_last"], verdict)
        if setting.endswith("sym50"):
            lines.append(f"| recovery >= 95 % | {where} | {100 * mixnn['label_recovery']:.1f} % | "
                         f"{verdict(mixnn['label_recovery'] >= 0.95)} |")
        per_epoch_ratio = epoch_cost(mixnn) / epoch_cost(ce)
        lines.append(f"| mixnn epoch <= 1.5x ce epoch | {where} | {per_epoch_ratio:.2f}x | " + (
            verdict(per_epoch_ratio <= 1.5) if comparable(mixnn, ce) else
            f"not comparable: {not_alone(mixnn, ce)}") + " |")
        lines += side_by_side_cost_target(runs, setting, epochs, verdict)
        if cleanlab is not None:
            ratio, better = labels_time_ratio(mixnn, cleanlab)
            lines.append(f"| time to corrected labels vs cleanlab route | {where} | {ratio:.2f}x, "
                         f"F1 {mixnn['f1']:.3f} vs {cleanlab['f1']:.3f} | " + (
                             f"reported (F1 {better})" if comparable(mixnn, cleanlab) else
                             f"not comparable: {not_alone(mixnn, cleanlab)}") + " |")
        lines += side_by_side_labels_time_target(runs, setting, epochs)
    return "\n".join(lines)


def labels_time_ratio(mixnn: dict, cleanlab: dict) -> tuple[float, str]:
    """mixnn's wall time over the cleanlab route's time until its suggestions exist (the
    cross-validation and find_label_issues; its retraining only makes the model), and whether
    mixnn's detection F1 is the better one."""
    cleanlab_labels_seconds = sum(cleanlab["stage_seconds"][stage]
                                  for stage in ("cross_validation", "find_label_issues"))
    better = "better" if mixnn["f1"] > cleanlab["f1"] else "**not better**"
    return mixnn["wall_seconds"] / cleanlab_labels_seconds, better


def seed_mean_target(runs: list[dict], setting: str, epochs: int, key: str, label: str,
                     verdict: Callable[[bool], str], *, strict: bool) -> list[str]:
    """The target row on the mean over seeds of mixnn minus ce in ``key``: passed when the mean
    is above 0 (``strict``) or at least 0; none when fewer than two seeds ran both."""
    differences = paired_differences(runs, setting, epochs, key)
    if len(differences) < 2:
        return []
    mean = statistics.mean(differences.values())
    passed = mean > 0 if strict else mean >= 0
    return [f"| {label} ce, mean over seeds {', '.join(map(str, differences))} | {setting} e{epochs} | "
            f"{100 * mean:+.2f} points | {verdict(passed)} |"]


def share_of_gap_closed(mixnn_accuracy: float, ce_accuracy: float, clean_accuracy: float) -> tuple[float, float]:
    """The share of the gap between ce's and the clean reference's accuracy that mixnn closes
    (NaN when ce is not below the reference), and that gap."""
    gap = clean_accuracy - ce_accuracy
    return ((mixnn_accuracy - ce_accuracy) / gap if gap > 0 else math.nan), gap


def seed_mean_gap_target(runs: list[dict], setting: str, epochs: int, clean_accuracy: float,
                         verdict: Callable[[bool], str]) -> list[str]:
    """The half-gap target over seeds: the share of the gap between ce's mean test accuracy and
    ``clean_accuracy`` (ce on clean labels) that mixnn's mean closes, over the seeds that ran
    both; passed at 0.5 or more; none when fewer than two seeds ran both."""
    mixnn, ce = (runs_by_seed(runs, setting, epochs, method) for method in ("mixnn", "ce"))
    seeds = sorted(mixnn.keys() & ce.keys())
    if len(seeds) < 2:
        return []
    closed, gap = share_of_gap_closed(statistics.mean(mixnn[seed]["test_acc_last"] for seed in seeds),
                                      statistics.mean(ce[seed]["test_acc_last"] for seed in seeds), clean_accuracy)
    return [f"| closes >= half the ce-to-clean gap, mean over seeds {', '.join(map(str, seeds))} | "
            f"{setting} e{epochs} | {closed:.2f} of {100 * gap:.1f} points | {verdict(closed >= 0.5)} |"]


def pairs_run_together(runs: list[dict], setting: str, epochs: int, other: str) -> dict[int, tuple[dict, dict]]:
    """The untagged mixnn run and ``other`` method's run of each seed whose two ran together on
    one host with nothing else (``ran_together_alone``), by seed."""
    mixnn, others = (runs_by_seed(runs, setting, epochs, method) for method in ("mixnn", other))
    return {seed: (mixnn[seed], others[seed]) for seed in sorted(mixnn.keys() & others.keys())
            if ran_together_alone(mixnn[seed], others[seed])}


def side_by_side_cost_target(runs: list[dict], setting: str, epochs: int,
                             verdict: Callable[[bool], str]) -> list[str]:
    """The per-epoch cost target on the seeds whose mixnn and ce ran together on one host with
    nothing else (``ran_together_alone``): each ratio is passed at 1.5x or less; none when no
    seed ran so."""
    ratios = {seed: epoch_cost(mixnn) / epoch_cost(ce)
              for seed, (mixnn, ce) in pairs_run_together(runs, setting, epochs, "ce").items()}
    if not ratios:
        return []
    return [f"| mixnn epoch <= 1.5x ce epoch, run together on one host, seeds {', '.join(map(str, ratios))} | "
            f"{setting} e{epochs} | {', '.join(f'{ratio:.2f}x' for ratio in ratios.values())} | "
            f"{verdict(max(ratios.values()) <= 1.5)} |"]


def side_by_side_labels_time_target(runs: list[dict], setting: str, epochs: int) -> list[str]:
    """Time until corrected labels exist, mixnn over the cleanlab route (``labels_time_ratio``),
    on the seeds whose two runs ran together on one host with nothing else; none when no seed
    ran so. The issue sets no threshold: the ratio is reported with whether mixnn's F1 is better."""
    pairs = pairs_run_together(runs, setting, epochs, "cleanlab")
    if not pairs:
        return []
    measured = {seed: (labels_time_ratio(mixnn, cleanlab), mixnn["f1"], cleanlab["f1"])
                for seed, (mixnn, cleanlab) in pairs.items()}
    cells = ", ".join(f"{ratio:.2f}x (F1 {mixnn_f1:.3f} vs {cleanlab_f1:.3f})"
                      for (ratio, _), mixnn_f1, cleanlab_f1 in measured.values())
    worse = [str(seed) for seed, ((_, better), _, _) in measured.items() if better != "better"]
    f1 = f"F1 **not better** on seeds {', '.join(worse)}" if worse else "F1 better on every seed"
    return [f"| time to corrected labels vs cleanlab route, run together on one host, seeds "
            f"{', '.join(map(str, measured))} | {setting} e{epochs} | {cells} | reported ({f1}) |"]


def ran_together_alone(first: dict, second: dict, overlap: float = 0.9) -> bool:
    """Whether two runs' wall times compare although neither had the whole machine: one host
    and thread count, both threads' worth of CPUs at once (2 x threads <= CPUs), neither resumed,
    their spans overlapping for ``overlap`` of the shorter, and a 15-minute load average after
    each of at most the CPUs + 0.5 (nothing else ran beside them)."""
    machines = first["machine"], second["machine"]
    if machines[0]["platform"] != machines[1]["platform"] or threads_of(first) != threads_of(second):
        return False
    if 2 * threads_of(first) > machines[0]["cpus"]:
        return False
    if any(not ran_in_one_go(run) or "finished_at" not in run or "load_average_after" not in machine
           for run, machine in zip((first, second), machines)):
        return False
    if any(machine["load_average_after"][2] > machine["cpus"] + 0.5 for machine in machines):
        return False
    spans = [run_span(run) for run in (first, second)]
    shared = min(end for _, end in spans) - max(start for start, _ in spans)
    return shared >= overlap * min(end - start for start, end in spans)


def ran_in_one_go(run: dict) -> bool:
    """Whether a run went from its first epoch to its end in one process: a cleanlab run always
    does (it never resumes, so records no ``segments``); another, when it records exactly one
    segment (runs from before the field existed record none and are not taken)."""
    return run["method"] == "cleanlab" or len(run.get("segments", [])) == 1


def run_span(run: dict) -> tuple[float, float]:
    """Start and end of a run, in seconds since the epoch (from ``finished_at`` and its elapsed time)."""
    end = seconds_since_epoch(run["finished_at"])
    return end - run["elapsed_seconds"], end


def comparable(*runs: dict) -> bool:
    """Whether the runs' wall times compare: each ran with every CPU of the machine."""
    return all(threads_of(run) == run["machine"]["cpus"] for run in runs)


def not_alone(*runs: dict) -> str:
    threads = " vs ".join(str(threads_of(run)) for run in runs)
    return f"{threads} threads, runs side by side"


def threads_of(run: dict) -> int:
    """Threads a run trained with (runs before the field existed used every CPU)."""
    return run["machine"].get("threads", run["machine"]["cpus"])


def mixing_epoch_stages(run: dict) -> dict[str, float]:
    """Seconds per mixing epoch of each step of a mixnn run, from its stage clock and history.

    Each step's clock is divided by the epochs that ran it: the neighbour search runs in mixing
    epochs only, the other steps also in consolidation epochs (``TrainConfig.fits_mixture``),
    so dividing those by the mixing epochs alone would charge a mixing epoch with the
    consolidation epochs' evaluation passes too."""
    mixing = [row for row in run["history"] if row["phase"] == "mixnn"]
    fitting = [row for row in run["history"] if row["phase"] in ("mixnn", "consolidate")]
    per = {name: run["stage_seconds"].get(name, 0.0) / len(mixing if name == "neighbor_search" else fitting)
           for name in MIXING_STEPS}
    per["training"] = sum(row["seconds"] for row in mixing) / len(mixing)
    return per


def epoch_cost(run: dict) -> float:
    """Seconds per mixing epoch (mixnn) or per epoch (others), from the stage clock."""
    if run["method"] != "mixnn":
        return run["stage_seconds"]["training"] / run["epochs"]
    return sum(mixing_epoch_stages(run).values())


def stage_table(runs: list[dict]) -> str:
    lines = ["| run | epoch s | evaluation pass | feature write | mixture fit | neighbour search | "
             "correction | training | search+fit+write share |",
             "| --- |" + " ---: |" * 8]
    for run in runs:
        if run["method"] != "mixnn" or run.get("tag"):
            continue
        per = mixing_epoch_stages(run)
        total = sum(per.values())
        share = (per["feature_write"] + per["mixture_fit"] + per["neighbor_search"]) / total
        lines.append(f"| {run['setting']} e{run['epochs']} ({threads_of(run)} threads) | {total:.1f} | " +
                     " | ".join(f"{value:.2f}" for value in per.values()) + f" | {100 * share:.1f} % |")
    return "\n".join(lines)


def load_interleaved_costs(folder: Path) -> list[dict]:
    """The ``bench/scaling.py`` measurements in ``folder`` that record when they were made (the
    older files timed code since changed and say neither when nor from which code), each with
    its file name under ``file``, oldest first."""
    records = [{**read_json(path), "file": path.name} for path in folder.glob("scaling*.json")]
    return sorted((record for record in records if "measured_at" in record), key=lambda record: record["measured_at"])


# the steps of a mixing epoch in a ``bench/scaling.py`` row besides its evaluation pass and
# training: the neighbour search (the index ``knn_method="auto"`` picks), the fit and the write
SEARCH_FIT_WRITE_KEYS = ("auto_build_s", "auto_query_s", "mixture_fit_s", "feature_write_s")
# the rest of a run's per-epoch files: the table read back, the index and neighbours written.
# Timed since the thirty-fourth pass; earlier rows timed one write of the whole table instead of
# a run's parts, and nothing else (scaling-solo-pass34.json times the parts and, as runs then
# did, their combination into one file).
EPOCH_FILE_KEYS = ("feature_read_s", "index_write_s")


def times_run_files(row: dict) -> bool:
    """Whether a ``bench/scaling.py`` row timed every per-epoch file of a run."""
    return all(key in row for key in EPOCH_FILE_KEYS)


def search_fit_files_seconds(row: dict) -> float:
    """Seconds of a mixing epoch's neighbour search, mixture fit and files in a
    ``bench/scaling.py`` row (the files it timed: ``times_run_files``)."""
    keys = SEARCH_FIT_WRITE_KEYS + (EPOCH_FILE_KEYS if times_run_files(row) else ())
    return sum(row[key] for key in keys)


def interleaved_epoch_seconds(row: dict) -> float:
    """Seconds of one mixing epoch in a ``bench/scaling.py`` row: the evaluation pass, the
    search, fit and files (``search_fit_files_seconds``) and the mixing training (BatchNorm
    refresh included); the label correction, a few milliseconds, is not timed there."""
    return row["eval_pass_s"] + search_fit_files_seconds(row) + row["mixnn_train_s"]


def interleaved_cost_table(records: list[dict]) -> str:
    """The cost targets on measurements where a ce epoch and a mixing epoch alternate in one
    process (fastest of the repeats): mixnn epoch <= 1.5x ce epoch at every size; neighbour
    search + mixture fit + feature write <= 10 % of the mixnn epoch and peak memory <= 2 GB,
    judged at N >= 60,000 (shown for the smaller sizes)."""
    lines = ["| file (measured) | threads | N | files timed | ce epoch s | mixnn epoch s | mixnn / ce | "
             "search + fit + files | peak memory (two trainers) |", "| --- |" + " ---: |" * 8]

    def judged(text: str, ok: bool, applies: bool = True) -> str:
        return f"{text} ({verdict(ok)})" if applies else text

    for record in records:
        for row in record["rows"]:
            epoch = interleaved_epoch_seconds(row)
            ratio = epoch / row["ce_epoch_s"]
            share = search_fit_files_seconds(row) / epoch
            large, memory_gb = row["n"] >= 60000, row["peak_rss_mb"] / 1024
            files = "a run's" if times_run_files(row) else "one table write"
            lines.append(f"| {record['file']} ({record['measured_at']}) | {record['machine']['threads']} | "
                         f"{row['n']:,} | {files} | {row['ce_epoch_s']:.2f} | {epoch:.2f} | "
                         f"{judged(f'{ratio:.2f}x', ratio <= 1.5)} | "
                         f"{judged(f'{100 * share:.2f} %', share <= 0.10, large)} | "
                         f"{judged(f'{memory_gb:.2f} GB', memory_gb <= 2.0, large)} |")
    return "\n".join(lines)


def save_plot(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def plots(runs: list[dict], folder: Path) -> list[str]:
    """Accuracy vs noise rate, label recovery over epochs and the stage breakdown, as PNG files."""
    made = []
    untagged = [run for run in runs if not run.get("tag")]
    for epochs in sorted({run["epochs"] for run in untagged if run["setting"].startswith("fmnist20k-sym")}):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in METHOD_ORDER:
            points = sorted((int(run["setting"].rsplit("sym", 1)[1]), 100 * run["test_acc_last"])
                            for run in untagged if run["method"] == method and run["epochs"] == epochs
                            and run["setting"].startswith("fmnist20k-sym"))
            if points:
                ax.plot(*zip(*points), marker="o", label=method)
        ax.set(xlabel="symmetric noise rate (%)", ylabel="test accuracy (%), last epoch",
               title=f"Fashion-MNIST 20k, {epochs} epochs")
        ax.legend()
        made.append(save_plot(fig, folder, f"accuracy_vs_noise_e{epochs}.png"))
    for setting, epochs in sorted({(run["setting"], run["epochs"]) for run in untagged}):
        chosen = [run for run in untagged if (run["setting"], run["epochs"]) == (setting, epochs)
                  and any("label_recovery" in row for row in run["history"])]
        if len(chosen) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for color, method in enumerate(method for method in METHOD_ORDER if any(run["method"] == method
                                                                                  for run in chosen)):
            runs = sorted((run for run in chosen if run["method"] == method), key=lambda run: run["seed"])
            seeds = ", ".join(str(run["seed"]) for run in runs)
            for run in runs:
                series = [100 * row["label_recovery"] for row in run["history"] if "label_recovery" in row]
                first = run is runs[0]
                ax.plot(range(1, len(series) + 1), series, color=f"C{color}", linewidth=1.6 if first else 0.7,
                        alpha=1.0 if first else 0.45,
                        label=f"{method} (seed{'s' if len(runs) > 1 else ''} {seeds})" if first else None)
                ax.plot([len(series)], [100 * run["label_recovery"]], marker="*", markersize=9,
                        linestyle="none", color=f"C{color}", alpha=1.0 if first else 0.45)
        ax.plot([], [], marker="*", markersize=9, linestyle="none", color="black",
                label="exported suggestion (the row's recovery)")
        ax.set(xlabel="epoch", ylabel="label recovery (%), training-time suggestion",
               title=f"{setting}, {epochs} epochs")
        ax.legend(fontsize=7, loc="lower right")
        made.append(save_plot(fig, folder, f"recovery_{setting}_e{epochs}.png"))
    mixnn_runs = [run for run in untagged if run["method"] == "mixnn"]
    if mixnn_runs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f"{run['setting']} e{run['epochs']}" for run in mixnn_runs]
        per_run = [mixing_epoch_stages(run) for run in mixnn_runs]
        bottom = [0.0] * len(mixnn_runs)
        for stage in (*MIXING_STEPS, "training"):
            values = [per[stage] for per in per_run]
            ax.barh(labels, values, left=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set(xlabel="seconds per mixing epoch")
        ax.legend(fontsize=7)
        made.append(save_plot(fig, folder, "stage_breakdown.png"))
    return made


def kept_last(result: dict) -> str:
    return f"{result['held_out_kept_accuracy'][-1]:.4f}" if "held_out_kept_accuracy" in result else "-"


def tuning_table(folder: Path) -> str:
    """One row per value tried by ``bench/tune.py``: held-out noisy-label accuracy (no test labels).

    Runs made before ``bn_refresh_samples`` existed had no BatchNorm refresh: shown as 0; runs
    made before the reference's kept rows were scored show "-" there."""
    lines = ["| setting | method | changed | held fixed | BN refresh | held-out acc, last epoch | best epoch (acc) "
             "| on kept rows, last epoch |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for path in sorted(folder.glob("*.json")):
        tuning = read_json(path)
        fixed = ", ".join(f"{key}={value}" for key, value in tuning["fixed"].items()) or "-"
        for value, result in tuning["results"].items():
            curve = result["held_out_noisy_accuracy"]
            best = max(range(len(curve)), key=curve.__getitem__)
            seed = f" s{tuning['seed']}" if tuning.get("seed") else ""
            seed += f" {tuning['folds']}-fold" if tuning.get("folds", 1) > 1 else ""
            seed += f" [{tuning['tag']}]" if tuning.get("tag") else ""
            seed += f", {tuning['plant']:.0%} of the labels planted wrong" if tuning.get("plant") else ""
            lines.append(f"| {tuning['setting']} e{tuning['epochs']}{seed} | {tuning['method']} | "
                         f"{tuning['field']}={value} | {fixed} | {result['config'].get('bn_refresh_samples', 0)} | "
                         f"{curve[-1]:.4f} | {best + 1} ({curve[best]:.4f}) | {kept_last(result)} |")
    return "\n".join(lines)


def machines(runs: list[dict]) -> str:
    """The machines the runs were measured on, with how many runs each (one seed trains
    bit-identical runs on one machine, different ones across machines)."""
    counts: dict[str, int] = {}
    for run in runs:
        machine = run["machine"]
        name = f"{machine['cpus']} CPUs, {machine['platform']}, torch {machine['torch']}"
        counts[name] = counts.get(name, 0) + 1
    return "; ".join(f"{name}: {count} run{'s' * (count != 1)}" for name, count in sorted(counts.items()))


def generated_section(runs: list[dict], plot_names: list[str], plot_folder: str,
                      tuning_folder: Path, interleaved: list[dict] = ()) -> str:
    finished = max(run["finished_at"] for run in runs)
    parts = [START, "", f"Generated by `bench/report.py` from {len(runs)} runs (last finished {finished}; "
             f"{machines(runs)}).", "",
             "### Targets", "", target_checks(runs), "",
             "### Cost targets, interleaved in one process (`bench/scaling.py`)", "",
             "A ce epoch and a mixing epoch of the same data and model alternate in one process, so "
             "both see the same machine; the fastest of the repeats. Fashion-MNIST, the cpu preset's "
             "small CNN.", "", interleaved_cost_table(list(interleaved)), "",
             "### Results", "",
             "\\* best epoch selected on the test set: a ceiling for reference, not a result.", "",
             results_table(runs), "### Across seeds", "",
             "Seed k draws the noisy labels, the initialisation and the batch order; the same seed "
             "gives every method the same noisy labels.", "", seeds_table(runs), "",
             "### Noise strength read by the first mixture fit", "",
             "The number a mixnn run's report and summary show (`noise_strength`): the odds of a noisy "
             "label by the run's first mixture fit, capped at 1, the share of full strength at which the "
             "default mixing and training-label correction run, seed by seed beside the odds the true "
             "share of wrong labels gives. It is not a noise-rate estimate: the loss mixture over-reads "
             "light symmetric noise, misses most noise that follows the classes, and can read the same "
             "labels very differently from one seed to the next.", "", noise_strength_table(runs), "",
             "### Cost of a mixing epoch", "", stage_table(runs), "",
             "### Choices on held-out noisy labels (`bench/tune.py`)", "",
             "10 % of each setting's noisy training set held out (stratified, seed 0); the model "
             "trains on the rest and is scored on the held-out NOISY labels (K-fold: K trainings, every row "
             "held out once, scored together). On kept rows: the same "
             "score on the held-out rows a reference keeps (2-fold out-of-fold plain training over "
             "all rows, confident learning's label issues removed; `tune/reference/`), with no "
             "clean label used.", "",
             tuning_table(tuning_folder), "", "### Plots", ""]
    parts += [f"![{name}]({plot_folder}/{name})" for name in plot_names]
    return "\n".join(parts + ["", END])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "runs")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    if not runs:
        raise SystemExit(f"no results in {args.runs}; run bench/suite.py first")
    plot_folder = args.runs.parent
    names = plots(runs, plot_folder)
    section = generated_section(runs, names, plot_folder.relative_to(args.out.parent.resolve())
                                if plot_folder.is_relative_to(args.out.parent.resolve()) else plot_folder,
                                plot_folder / "tune", load_interleaved_costs(plot_folder))
    text = args.out.read_text() if args.out.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{args.out} has no {START} ... {END} section to replace")
    head, rest = text.split(START, 1)
    args.out.write_text(head + section + rest.split(END, 1)[1])
    print(f"wrote {args.out} and {len(names)} plots in {plot_folder}")


if __name__ == "__main__":
    main()
