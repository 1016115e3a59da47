"""The benchmark suite still works end to end: its quick mode, then the report of its results."""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bench import (
    compare_tune,
    flag_rules,
    mixing_diagnostics,
    noise_share_estimates,
    prefect_overhead,
    promote_rows,
    quality_scores,
    relabel_scores,
    report,
    rescore_suggestions,
    retrain_on_suggestions,
    scaling,
    score_agreement,
    suggestion_rules,
    suggestion_share,
    suite,
    tag_pairs,
    temperature_rows,
    timestamps,
    tune,
    weight_average,
)
from mixnn_core.confident_learning import counted_suggestions
from mixnn_core.config import cpu_preset
from mixnn_core.metrics import detection_auroc, detection_scores, label_quality_metrics
from mixnn_core.outputs import MIXNN_LABEL_ISSUE_RULE, MIXNN_SUGGESTION_RULE, mixnn_outputs, sample_outputs
from mixnn_core.relabel import ExportedModel, predictions_and_votes, score_samples
from mixnn_core.trainer import Trainer


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "runs"
    methods = [method for method in suite.METHODS
               if method != "cleanlab" or importlib.util.find_spec("cleanlab") is not None]
    paths = suite.main(["--quick", "--out", str(out), "--methods", *methods])
    return out, methods, [json.loads(path.read_text()) for path in paths]


def test_quick_suite_measures_every_method_on_the_same_noisy_labels(quick_results):
    _, methods, runs = quick_results
    assert [run["method"] for run in runs] == methods
    assert len({run["noise"]["wrong_fraction"] for run in runs}) == 1
    assert 0.3 < runs[0]["noise"]["wrong_fraction"] < 0.4  # 40 % symmetric, true class included
    for run in runs:
        assert run["epochs"] == 6 and len(run["history"]) == 6
        for key in ("test_acc_last", "label_recovery", "precision", "recall", "f1", "auroc"):
            assert 0.0 <= run[key] <= 1.0, (run["method"], key, run[key])
        # 6 epochs on digits already learn something: far above chance (10 %)
        assert run["test_acc_last"] > 0.5 and run["label_recovery"] > 0.5, run["method"]
        assert run["wall_seconds"] > 0
        assert run["code"] == suite.code_version()  # nothing moved since: the checkout's commit
        assert run["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    mixnn = next(run for run in runs if run["method"] == "mixnn")
    assert {"evaluation_pass", "feature_write", "mixture_fit", "neighbor_search", "training"} <= set(
        mixnn["stage_seconds"])


def test_code_version_names_the_commit_and_the_changed_python_files(tmp_path):
    assert suite.code_version(tmp_path) == {"commit": None, "modified": None}  # not a git checkout

    def git(*arguments):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                               *arguments], capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    for name in ("pkg/step.py", "notes.md"):
        (tmp_path / name).write_text("first\n")
    git("add", "."), git("commit", "-q", "-m", "first")
    assert suite.code_version(tmp_path) == {"commit": git("rev-parse", "HEAD"), "modified": []}
    for name in ("pkg/step.py", "notes.md"):
        (tmp_path / name).write_text("second\n")
    (tmp_path / "pkg" / "new.py").write_text("untracked\n")
    assert suite.code_version(tmp_path)["modified"] == ["pkg/step.py"]  # code only, tracked only


def test_second_call_skips_finished_runs(quick_results):
    out, methods, runs = quick_results
    before = {path: path.stat().st_mtime_ns for path in out.glob("*.json")}
    orphan = out / "partial" / f"{runs[0]['setting']}-{methods[0]}-e6-s0.pt"  # crash after the JSON
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left behind")
    suite.main(["--quick", "--out", str(out), "--methods", *methods])
    assert {path: path.stat().st_mtime_ns for path in out.glob("*.json")} == before
    assert not orphan.exists()


def test_a_killed_run_resumes_after_its_last_epoch_to_the_same_result(quick_results, tmp_path):
    _, _, runs = quick_results
    uninterrupted = next(run for run in runs if run["method"] == "mixnn")
    command = [sys.executable, str(suite.ROOT / "bench" / "suite.py"), "--quick", "--methods", "mixnn",
               "--out", str(tmp_path)]
    partial = tmp_path / "partial" / "digits-sym40-mixnn-e6-s0.pt"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    while not partial.exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # a crash: no handler runs
    process.wait()
    assert partial.exists() and not list(tmp_path.glob("*.json"))
    [path] = suite.main(["--quick", "--methods", "mixnn", "--out", str(tmp_path)])
    resumed = json.loads(path.read_text())
    assert not partial.exists()
    assert resumed["segments"][0]["from_epoch"] == 0
    assert len(resumed["segments"]) == 2 and 1 <= resumed["segments"][1]["from_epoch"] < 6
    assert resumed["elapsed_seconds"] > resumed["wall_seconds"] - 1e-9  # both parts counted

    def untimed(history):
        return [{key: value for key, value in row.items() if key != "seconds"} for row in history]

    assert untimed(resumed["history"]) == untimed(uninterrupted["history"])
    for key in ("test_acc_last", "label_recovery", "f1", "auroc"):
        assert resumed[key] == uninterrupted[key], key
    assert set(resumed["stage_seconds"]) == set(uninterrupted["stage_seconds"])


def test_a_damaged_partial_file_is_named_with_what_to_do(tmp_path):
    partial = tmp_path / "partial" / "digits-sym40-mixnn-e6-s0.pt"
    partial.parent.mkdir()
    partial.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"{re.escape(str(partial))} is not a readable torch file .*"
                                         "delete it to run the row from its start"):
        suite.main(["--quick", "--methods", "mixnn", "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.json"))


def test_report_writes_tables_targets_and_plots(quick_results, tmp_path):
    out, methods, _ = quick_results
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text(f"# Benchmarks\n\nhand-written intro\n\n{report.START}\nold\n{report.END}\n\nafter\n")
    report.main(["--runs", str(out), "--out", str(benchmarks)])
    text = benchmarks.read_text()
    assert "hand-written intro" in text and "after" in text and "\nold\n" not in text
    assert "#### digits-sym40, 6 epochs, seed 0" in text
    for method in methods:
        assert f"| {method} |" in text
    assert "| recovery > " in text and "mixnn epoch <= 1.5x ce epoch" in text
    assert "### Across seeds" in text
    if "mixnn" in methods:
        assert "| digits-sym40 e6 | 0 | " in text.split("### Noise strength read by the first mixture fit")[1]
    if "cleanlab" in methods:
        assert "| time to corrected labels vs cleanlab route | digits-sym40 e6 |" in text
    assert (out.parent / "stage_breakdown.png").stat().st_size > 1000
    assert (out.parent / "recovery_digits-sym40_e6.png").exists()


def test_report_names_every_machine_its_runs_came_from():
    def run(platform_name):
        return {"machine": {"cpus": 2, "platform": platform_name, "torch": "2.14"}}

    assert report.machines([run("host-a"), run("host-b"), run("host-a")]) == (
        "2 CPUs, host-a, torch 2.14: 2 runs; 2 CPUs, host-b, torch 2.14: 1 run")


def test_across_seeds_pairs_runs_of_the_same_seed_only():
    def run(method, seed, accuracy, recovery, tag=""):
        return {"setting": "fmnist20k-sym50", "epochs": 20, "method": method, "seed": seed, "tag": tag,
                "test_acc_last": accuracy, "label_recovery": recovery, "f1": 0.9, "auroc": 0.99}

    runs = [run("ce", 0, 0.870, 0.880), run("mixnn", 0, 0.860, 0.890),
            run("ce", 1, 0.860, 0.870), run("mixnn", 1, 0.880, 0.900),
            run("mixnn", 2, 0.990, 0.990),  # no ce of seed 2: not paired
            run("ce", 1, 0.100, 0.100, tag="other")]  # tagged: another configuration
    accuracy = report.paired_differences(runs, "fmnist20k-sym50", 20, "test_acc_last")
    assert list(accuracy) == [0, 1]
    assert accuracy[0] == pytest.approx(-0.010) and accuracy[1] == pytest.approx(0.020)
    table = report.seeds_table(runs)
    assert "| fmnist20k-sym50 e20 | ce | 0, 1 | 86.5 ± 0.7 | 87.5 ± 0.7 |" in table
    assert "| fmnist20k-sym50 e20 | mixnn | 0, 1, 2 | 91.0 ± 7.0 |" in table
    assert "| fmnist20k-sym50 e20 | 0, 1 | -1.0, +2.0 | +0.50 | +1.0, +3.0 | +2.00 |" in table
    assert "| fmnist20k-sym20" not in report.seeds_table([run("ce", 0, 0.8, 0.8) | {"setting": "fmnist20k-sym20"}])

    def verdict(ok):
        return "PASS" if ok else "MISS"

    assert report.seed_mean_target(runs, "fmnist20k-sym50", 20, "test_acc_last", "test acc >=", verdict, strict=False) == [
        "| test acc >= ce, mean over seeds 0, 1 | fmnist20k-sym50 e20 | +0.50 points | PASS |"]
    runs[3]["test_acc_last"] = 0.850  # seed 1 now -1.0 as well
    assert report.seed_mean_target(runs, "fmnist20k-sym50", 20, "test_acc_last", "test acc >=", verdict, strict=False)[0].endswith(
        "| -1.00 points | MISS |")
    assert report.seed_mean_target(runs[:2], "fmnist20k-sym50", 20, "test_acc_last", "test acc >=", verdict, strict=False) == []
    runs[3]["test_acc_last"] = 0.880  # ce 0.870 / 0.860 (mean 0.865), mixnn 0.860 / 0.880 (mean 0.870)
    assert report.seed_mean_gap_target(runs, "fmnist20k-sym50", 20, 0.885, verdict) == [
        "| closes >= half the ce-to-clean gap, mean over seeds 0, 1 | fmnist20k-sym50 e20 | 0.25 of 2.0 points | MISS |"]
    assert report.seed_mean_gap_target(runs, "fmnist20k-sym50", 20, 0.874, verdict)[0].endswith(
        "| 0.56 of 0.9 points | PASS |")
    assert report.seed_mean_gap_target(runs[:2], "fmnist20k-sym50", 20, 0.885, verdict) == []
    level = [run("ce", 0, 0.5, 0.5), run("mixnn", 0, 0.25, 0.25), run("ce", 1, 0.5, 0.5), run("mixnn", 1, 0.75, 0.75)]
    for strict, outcome in ((False, "PASS"), (True, "MISS")):  # a mean difference of exactly 0
        assert report.seed_mean_target(level, "fmnist20k-sym50", 20, "label_recovery", "recovery >", verdict,
                                       strict=strict)[0].endswith(f"| +0.00 points | {outcome} |")


def test_cost_target_reads_only_seeds_whose_two_runs_ran_together_alone_on_one_host():
    def run(method, seed, finished="2026-12-03T12:00:00Z", elapsed=1000.0, platform_name="host-a",
            threads=1, load=2.0, segments=1):
        history = [{"phase": "warmup", "seconds": 40.0}] + [{"phase": "mixnn", "seconds": 50.0}] * 2
        stages = ({"training": 140.0, "evaluation_pass": 10.0, "neighbor_search": 4.0} if method == "mixnn"
                  else {"training": 120.0})
        return {"setting": "cifar10n-aggre", "epochs": 3, "method": method, "seed": seed, "tag": "",
                "finished_at": finished, "elapsed_seconds": elapsed, "segments": [{}] * segments,
                "history": history, "stage_seconds": stages,
                "machine": {"cpus": 2, "threads": threads, "platform": platform_name,
                            "load_average_after": [load, load, load]}}

    def verdict(ok):
        return "PASS" if ok else "MISS"

    # mixnn: (50 + 10/2 + 4/2) = 57 s per mixing epoch; ce: 40 s per epoch
    assert report.epoch_cost(run("mixnn", 1)) == pytest.approx(57.0)
    assert report.ran_together_alone(run("mixnn", 1), run("ce", 1))
    apart = [run("ce", 1, finished="2026-12-03T13:00:00Z"), run("ce", 1, platform_name="host-b"),
             run("ce", 1, threads=2), run("ce", 1, load=3.0), run("ce", 1, segments=2),
             run("ce", 1, finished="2026-12-03T12:02:00Z")]  # overlapping 880 of 1000 s
    for other in apart:
        assert not report.ran_together_alone(run("mixnn", 1), other), other
    runs = [run("mixnn", 1), run("ce", 1), run("mixnn", 2), run("ce", 2, load=4.0), run("mixnn", 0)]
    assert report.side_by_side_cost_target(runs, "cifar10n-aggre", 3, verdict) == [
        "| mixnn epoch <= 1.5x ce epoch, run together on one host, seeds 1 | cifar10n-aggre e3 | 1.43x | PASS |"]
    runs[0]["stage_seconds"]["evaluation_pass"] = 40.0  # 72 s per mixing epoch: 1.8x
    assert report.side_by_side_cost_target(runs, "cifar10n-aggre", 3, verdict)[0].endswith("| 1.80x | MISS |")
    assert report.side_by_side_cost_target(runs[2:], "cifar10n-aggre", 3, verdict) == []


def test_time_to_corrected_labels_is_reported_on_seeds_whose_mixnn_and_cleanlab_ran_together():
    def run(method, seed, f1, finished="2026-12-05T08:00:00Z", load=2.0):
        stages = ({"cross_validation": 150.0, "find_label_issues": 10.0, "retraining": 90.0}
                  if method == "cleanlab" else {"training": 200.0})
        return {"setting": "fmnist20k-sym50", "epochs": 20, "method": method, "seed": seed, "tag": "",
                "finished_at": finished, "elapsed_seconds": 250.0, "wall_seconds": 240.0, "f1": f1,
                "stage_seconds": stages, **({} if method == "cleanlab" else {"segments": [{}]}),
                "machine": {"cpus": 2, "threads": 1, "platform": "host-a", "load_average_after": [load] * 3}}

    # mixnn 240 s against cleanlab's 150 + 10 s until its suggestions exist (its retraining excluded);
    # a cleanlab run never resumes and records no segments, as the suite writes it
    runs = [run("mixnn", 5, 0.93), run("cleanlab", 5, 0.92), run("mixnn", 6, 0.90), run("cleanlab", 6, 0.91),
            run("mixnn", 7, 0.93), run("cleanlab", 7, 0.92, finished="2026-12-05T09:00:00Z"),
            run("mixnn", 8, 0.93), run("cleanlab", 8, 0.92, load=3.0)]
    assert report.side_by_side_labels_time_target(runs, "fmnist20k-sym50", 20) == [
        "| time to corrected labels vs cleanlab route, run together on one host, seeds 5, 6 | fmnist20k-sym50 e20 | "
        "1.50x (F1 0.930 vs 0.920), 1.50x (F1 0.900 vs 0.910) | reported (F1 **not better** on seeds 6) |"]
    assert report.side_by_side_labels_time_target(runs[:2], "fmnist20k-sym50", 20)[0].endswith(
        "| 1.50x (F1 0.930 vs 0.920) | reported (F1 better on every seed) |")
    assert report.side_by_side_labels_time_target(runs[4:], "fmnist20k-sym50", 20) == []


def test_a_mixing_epoch_is_charged_only_its_own_evaluation_pass_not_the_consolidation_epochs():
    # 2 mixing and 2 consolidation epochs: 4 evaluation passes (5 s each), 2 neighbour searches
    history = ([{"phase": "warmup", "seconds": 40.0}] + [{"phase": "mixnn", "seconds": 50.0}] * 2
               + [{"phase": "consolidate", "seconds": 45.0}] * 2)
    run = {"method": "mixnn", "history": history,
           "stage_seconds": {"training": 230.0, "evaluation_pass": 20.0, "feature_write": 2.0,
                             "mixture_fit": 0.4, "neighbor_search": 4.0, "correction": 0.2}}
    assert report.mixing_epoch_stages(run) == pytest.approx(
        {"evaluation_pass": 5.0, "feature_write": 0.5, "mixture_fit": 0.1, "neighbor_search": 2.0,
         "correction": 0.05, "training": 50.0})
    assert report.epoch_cost(run) == pytest.approx(57.65)


def test_retraining_probe_trains_each_second_model_on_the_first_ones_suggestions(tmp_path):
    path = retrain_on_suggestions.main(["--setting", "digits-sym40", "--epochs", "3", "--out", str(tmp_path)])
    assert path == tmp_path / "digits-sym40-s0-e3.json"
    trainings = json.loads(path.read_text())["trainings"]
    assert list(trainings) == ["ce", "mixnn", "ce_on_mixnn_suggestions", "ce_on_ce_suggestions"]
    assert trainings["ce"]["trained_label_accuracy"] == pytest.approx(0.6, abs=0.05)  # 40 % symmetric noise
    assert trainings["mixnn"]["trained_label_accuracy"] == trainings["ce"]["trained_label_accuracy"]
    for first in ("mixnn", "ce"):
        assert (trainings[f"ce_on_{first}_suggestions"]["trained_label_accuracy"]
                == trainings[first]["suggestion_recovery"])
    assert all(0.0 < training["test_acc_last"] <= 1.0 for training in trainings.values())


def test_promoting_tagged_rows_renames_both_sides_and_records_each_move(tmp_path):
    def write_row(name, seed, tag, overrides, method="mixnn", retagged=None, arrays=True,
                  setting="fmnist20k-sym20"):
        row = {"setting": setting, "method": method, "epochs": 20, "seed": seed, "tag": tag,
               "overrides": overrides, "test_acc_last": 0.8 + seed / 100 + len(tag) / 1000}
        if retagged:
            row["retagged"] = retagged
        if arrays:
            row["final_arrays"] = f"arrays/{name}.npz"
            np.savez(tmp_path / row["final_arrays"], marker=np.array([seed, len(tag)]))
        (tmp_path / f"{name}.json").write_text(json.dumps(row))
        return row

    (tmp_path / "arrays").mkdir()
    earlier = {"file": "x.json", "tag": "x", "overrides": {}, "date": "2026-12-01", "why": "older"}
    old = write_row("fmnist20k-sym20-mixnn-e20-s0", 0, "", {}, retagged=earlier)
    new = write_row("fmnist20k-sym20-mixnn-e20-s0-new", 0, "new", {"knob": "b"})
    alone = write_row("fmnist20k-sym20-mixnn-e20-s1-new", 1, "new", {"knob": "b"}, arrays=False)
    ce = write_row("fmnist20k-sym20-ce-e20-s0", 0, "", {})
    other_setting = write_row("fmnist20k-asym40-mixnn-e20-s0-new", 0, "new", {"knob": "b"},
                              setting="fmnist20k-asym40")
    command = ["--tag", "new", "--demote-tag", "old", "--why", "knob b became the default",
               "--runs", str(tmp_path), "--settings", "fmnist20k-sym20"]
    before = sorted(path.name for path in tmp_path.rglob("*"))
    promote_rows.main(command + ["--dry-run"])
    assert sorted(path.name for path in tmp_path.rglob("*")) == before

    promote_rows.main(command)

    def read(name):
        return json.loads((tmp_path / f"{name}.json").read_text())

    promoted, demoted = read("fmnist20k-sym20-mixnn-e20-s0"), read("fmnist20k-sym20-mixnn-e20-s0-old")
    assert promoted["test_acc_last"] == new["test_acc_last"]
    assert demoted["test_acc_last"] == old["test_acc_last"]
    assert (promoted["tag"], promoted["overrides"]) == ("", {})
    assert promoted["retagged"]["file"] == "fmnist20k-sym20-mixnn-e20-s0-new.json"
    assert (promoted["retagged"]["tag"], promoted["retagged"]["overrides"]) == ("new", {"knob": "b"})
    assert demoted["tag"] == "old" and demoted["retagged"]["file"] == "fmnist20k-sym20-mixnn-e20-s0.json"
    assert demoted["retagged"]["earlier"] == earlier
    assert demoted["retagged"]["why"] == "knob b became the default"
    for row, seed_and_tag in ((promoted, [0, 3]), (demoted, [0, 0])):  # each row keeps its own arrays
        assert np.load(tmp_path / row["final_arrays"])["marker"].tolist() == seed_and_tag
    assert read("fmnist20k-sym20-mixnn-e20-s1")["test_acc_last"] == alone["test_acc_last"]
    assert read("fmnist20k-sym20-ce-e20-s0") == ce
    assert [path.name for path in tmp_path.glob("*-new.json")] == ["fmnist20k-asym40-mixnn-e20-s0-new.json"]
    assert read("fmnist20k-asym40-mixnn-e20-s0-new") == other_setting  # another setting: left alone
    assert [path.name for path in tmp_path.glob("arrays/*-new.npz")] == \
        ["fmnist20k-asym40-mixnn-e20-s0-new.npz"]
    with pytest.raises(SystemExit):  # nothing of fmnist20k-sym20 tagged "new" is left
        promote_rows.main(command)


def test_temperature_rows_compares_the_fit_on_some_rows_with_the_fit_on_all(tmp_path):
    rng = np.random.default_rng(0)
    given = rng.integers(0, 4, 3000)
    logits = rng.normal(0, 2, (3000, 4))
    logits[np.arange(3000), given] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path = tmp_path / "run.npz"
    np.savez(path, given=given, probs=probs)
    some = temperature_rows.measure(path, 1000)
    assert (some["n"], some["rows"], len(some["random"])) == (3000, 1000, 5)
    assert some["evenly_spaced"]["relative_change"] != 0.0
    assert some["evenly_spaced"]["max_abs_p_clean_change"] > 0.0
    everything = temperature_rows.measure(path, 3000)
    assert everything["random"] == [] and everything["evenly_spaced"]["relative_change"] == 0.0
    assert everything["evenly_spaced"]["max_abs_p_clean_change"] == 0.0


def test_result_timestamps_read_back_as_the_time_they_were_written():
    assert timestamps.seconds_since_epoch("1970-01-02T00:00:00Z") == 86400.0
    assert abs(timestamps.seconds_since_epoch(timestamps.utc_now()) - time.time()) < 2.0


def test_weight_average_means_parameters_and_keeps_the_last_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    first = {k: v.clone() for k, v in model.state_dict().items()}
    second = {k: v + 2.0 if v.is_floating_point() else v + 1 for k, v in first.items()}
    averaged = weight_average.averaged_parameters([first, second])
    assert torch.allclose(averaged["0.weight"], first["0.weight"] + 1.0)
    assert torch.allclose(averaged["1.bias"], first["1.bias"] + 1.0)
    assert torch.equal(averaged["1.running_mean"], second["1.running_mean"])
    assert torch.equal(averaged["1.num_batches_tracked"], second["1.num_batches_tracked"])
    assert all(torch.equal(v, second[k]) for k, v in weight_average.averaged_parameters([second]).items())


def test_weight_average_probe_scores_each_average_on_the_same_held_out_rows(tmp_path):
    path = weight_average.main(["--setting", "digits-sym40", "--epochs", "3", "--last", "2", "--folds", "2",
                                "--out", str(tmp_path), "--reference", str(tmp_path / "reference")])
    assert path == tmp_path / "digits-sym40-mixnn-e3-f2.json"
    record = json.loads(path.read_text())
    results = record["results"]
    assert list(results) == ["own", "1", "2"]
    assert results["own"]["held_out_noisy_minus_own"] == 0.0
    for result in results.values():
        assert 0.0 < result["held_out_noisy_accuracy"] < 1.0 and 0.0 < result["test_acc_mean_over_folds"] <= 1.0
        assert result["held_out_noisy_minus_own"] == pytest.approx(
            result["held_out_noisy_accuracy"] - results["own"]["held_out_noisy_accuracy"])
    with pytest.raises(SystemExit):  # never replaces a result
        weight_average.main(["--setting", "digits-sym40", "--epochs", "3", "--last", "2", "--folds", "2",
                             "--out", str(tmp_path), "--reference", str(tmp_path / "reference")])
    for folds in ("0", "1000"):  # none, or more folds than the smallest class has rows
        with pytest.raises(SystemExit):
            weight_average.main(["--setting", "digits-sym40", "--epochs", "3", "--last", "2", "--folds", folds,
                                 "--out", str(tmp_path / "other"), "--reference", str(tmp_path / "reference")])
    assert not (tmp_path / "other").exists()


def test_noise_strength_table_lists_each_seeds_first_fit_beside_the_true_odds():
    def run(seed, strengths, wrong=0.2, method="mixnn", tag=""):
        return {"setting": "fmnist20k-asym40", "epochs": 20, "method": method, "seed": seed, "tag": tag,
                "given_label_accuracy": 1 - wrong,
                "history": [{"epoch": e} if s is None else {"epoch": e, "noise_strength": s}
                            for e, s in enumerate(strengths)]}

    runs = [run(1, [None, 0.31, 0.31]), run(0, [None, None, 0.36, 0.36], wrong=0.6),
            run(2, [None, 0.9], tag="other"),  # tagged: another configuration
            run(3, [None, 0.5], method="ce")]
    assert report.first_noise_strength(runs[0]) == 0.31 and report.first_noise_strength(runs[3] | {"history": []}) is None
    assert report.noise_strength_table(runs).splitlines()[2:] == [
        "| fmnist20k-asym40 e20 | 0, 1 | 60.0%, 20.0% | 1.00, 0.25 | 0.360, 0.310 |"]


def test_tuning_on_held_out_noisy_labels_lands_in_the_report(quick_results, tmp_path):
    out, _, _ = quick_results
    tuned = tune.main(["--setting", "digits-sym40", "--method", "mixnn", "--epochs", "3",
                       "--grid", "lr=0.02,0.05", "--set", "warmup_epochs=1", "--out", str(out.parent / "tune")])
    result = json.loads(tuned.read_text())
    assert result["field"] == "lr" and result["fixed"] == {"warmup_epochs": 1}
    assert result["code"] == suite.code_version()
    assert result["machine"]["platform"] == platform.platform() and result["machine"]["threads"] >= 1
    assert set(result["results"]) == {"0.02", "0.05"} and result["best"] == result["best_by_score"]["noisy"]
    for score, curve in tune.SCORE_CURVES.items():  # each score's best is the value it scores highest
        last = {value: row[curve][-1] for value, row in result["results"].items()}
        assert last[result["best_by_score"][score]] == max(last.values())
    data = suite.load(suite.SETTINGS["digits-sym40"], 0)
    held_rows = tune.held_out_split(data.noisy_labels, 0)[1]
    held_noisy = data.noisy_labels[held_rows]
    reference = json.loads((out.parent / "tune" / "reference" / "digits-sym40-e3-s0.json").read_text())
    kept = np.asarray(reference["rows_kept"])[held_rows]  # out-of-fold plain training, label issues removed
    assert result["folds"] == 1 and result["held_rows"] == held_rows.tolist()
    assert kept.shape == held_noisy.shape and 0.3 < kept.mean() < 1 and result["held_rows_kept"] == kept.sum()
    right = held_noisy == data.train.labels[held_rows]
    assert right[kept].mean() > right.mean() + 0.05  # fewer wrong labels among the kept rows (0.82 vs 0.69)
    for value, row in result["results"].items():
        curve = row["held_out_noisy_accuracy"]
        assert len(curve) == 3 and all(0 <= acc <= 1 for acc in curve) and max(curve) > 0.3
        assert row["config"]["lr"] == float(value) and row["config"]["warmup_epochs"] == 1
        predictions = np.asarray(row["held_out_predictions"])
        kept_curve = row["held_out_kept_accuracy"]
        assert len(kept_curve) == 3 and (predictions == held_noisy).mean() == pytest.approx(curve[-1])
        assert (predictions[kept] == held_noisy[kept]).mean() == pytest.approx(kept_curve[-1])
        [first_fit] = row["first_fits"]  # one fold; digits with 40 % symmetric noise
        assert 0 < first_fit["noise_strength"] <= 1 and 0 <= first_fit["noise_concentration"] < 0.5
    benchmarks = tmp_path / "BENCHMARKS.md"
    report.main(["--runs", str(out), "--out", str(benchmarks)])
    assert "| digits-sym40 e3 | mixnn | lr=0.05 | warmup_epochs=1 | 4096 |" in benchmarks.read_text()


def test_best_values_names_each_scores_own_best_and_the_first_value_on_a_tie():
    def scored(noisy, kept, balanced):
        return {"held_out_noisy_accuracy": [0.1, noisy], "held_out_kept_accuracy": [0.9, kept],
                "held_out_balanced_accuracy": [0.5, balanced]}

    results = {"a": scored(0.50, 0.80, 0.60), "b": scored(0.52, 0.79, 0.60), "c": scored(0.40, 0.70, 0.59)}
    assert tune.best_values(results) == {"noisy": "b", "kept": "a", "balanced": "a"}


def test_one_way_noise_flips_only_the_mapped_classes_and_only_forward():
    setting = suite.Setting("digits", None, ("one_way", 0.4))
    data = suite.load(setting, 0)
    true, noisy = data.train.labels, data.noisy_labels
    wrong = noisy != true
    assert set(zip(true[wrong].tolist(), noisy[wrong].tolist())) == set(suite.ONE_WAY_FLIPS.items())
    for source in suite.ONE_WAY_FLIPS:
        assert 0.3 < wrong[true == source].mean() < 0.5  # 40 % of each mapped class, about 150 samples each
    assert data.noise_report["mode"] == "one_way" and data.noise_report["rate"] == 0.4
    assert data.noise_report["wrong_fraction"] == pytest.approx(wrong.mean())
    assert np.array_equal(suite.load(setting, 0).noisy_labels, noisy)
    assert not np.array_equal(suite.load(setting, 1).noisy_labels, noisy)


def test_tuning_seed_changes_the_noisy_labels_and_names_the_file(tmp_path):
    tuned = tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.02",
                       "--seed", "1", "--tag", "rerun", "--out", str(tmp_path)])
    assert tuned.name == "digits-sym40-ce-lr=0.02-s1-rerun.json"
    with pytest.raises(SystemExit):  # a second run would replace the first's results
        tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.02",
                   "--seed", "1", "--tag", "rerun", "--out", str(tmp_path)])
    other_value = tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.05",
                             "--seed", "1", "--tag", "rerun", "--out", str(tmp_path)])
    assert other_value.name == "digits-sym40-ce-lr=0.05-s1-rerun.json" and tuned.exists()
    result = json.loads(tuned.read_text())
    assert result["seed"] == 1 and result["tag"] == "rerun" and result["results"]["0.02"]["config"]["seed"] == 1
    assert not np.array_equal(suite.load(suite.SETTINGS["digits-sym40"], 1).noisy_labels,
                              suite.load(suite.SETTINGS["digits-sym40"], 0).noisy_labels)


def test_tuning_over_k_folds_scores_every_row_once(tmp_path):
    tuned = tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "2", "--grid", "lr=0.02",
                       "--folds", "3", "--out", str(tmp_path)])
    assert tuned.name == "digits-sym40-ce-lr=0.02-f3.json"
    result = json.loads(tuned.read_text())
    data = suite.load(suite.SETTINGS["digits-sym40"], 0)
    held_rows = np.asarray(result["held_rows"])
    assert result["folds"] == 3 and sorted(held_rows) == list(range(len(data.noisy_labels)))
    splits = tune.held_out_splits(data.noisy_labels, 0, 3)
    assert all(len(np.intersect1d(fit, held)) == 0 for fit, held in splits)
    row = result["results"]["0.02"]
    predictions = np.asarray(row["held_out_predictions"])
    right = predictions == data.noisy_labels[held_rows]
    assert len(row["held_out_noisy_accuracy"]) == 2 and right.mean() == pytest.approx(row["held_out_noisy_accuracy"][-1])
    kept = np.asarray(json.loads((tmp_path / "reference" / "digits-sym40-e2-s0.json").read_text())["rows_kept"])
    assert right[kept[held_rows]].mean() == pytest.approx(row["held_out_kept_accuracy"][-1])
    per_class = [right[data.noisy_labels[held_rows] == c].mean() for c in np.unique(data.noisy_labels)]
    assert np.mean(per_class) == pytest.approx(row["held_out_balanced_accuracy"][-1])
    fold_rows = splits[0][1]  # the first fold's model, trained again alone, predicts its rows the same
    trainer = Trainer(cpu_preset(2, "ce", **{**suite.SETTINGS["digits-sym40"].train_options(), "seed": 0}),
                      data.train.images[splits[0][0]], data.noisy_labels[splits[0][0]], 10)
    trainer.fit()
    alone = trainer.predict_proba(torch.as_tensor(data.train.images[fold_rows])).argmax(axis=1)
    assert np.array_equal(alone, predictions[:len(fold_rows)])
    with pytest.raises(SystemExit):
        tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.02",
                   "--folds", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="2"):  # more folds than the smallest class has rows
        tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.02",
                   "--folds", "1000", "--out", str(tmp_path)])
    assert "| digits-sym40 e2 3-fold | ce | lr=0.02 |" in report.tuning_table(tmp_path)


def test_balanced_scores_do_not_pay_for_learning_a_one_way_flip():
    # ten images of class 0 and ten of class 1; four of class 0's labels flipped to 1, never back
    labels = np.array([0] * 6 + [1] * 4 + [1] * 10)
    true = np.array([0] * 10 + [1] * 10)
    learns_the_flip = np.array([0] * 4 + [1] * 2 + [1] * 4 + [1] * 10)  # 1 on six class-0 images
    plain = [np.mean(p == labels) for p in (true, learns_the_flip)]
    balanced = [tune.class_balanced_scores(p == labels, labels).mean() for p in (true, learns_the_flip)]
    assert plain[1] > plain[0]  # 0.9 against 0.8: the flip pays on plain noisy-label accuracy
    # the balanced score prefers the true classes, as the true labels do (1.0 against 0.7)
    assert balanced == pytest.approx([(6 / 6 + 10 / 14) / 2, (4 / 6 + 14 / 14) / 2])
    assert balanced[0] > balanced[1]
    two_epochs = np.stack([true == labels, learns_the_flip == labels])  # rows on the last axis
    assert tune.class_balanced_scores(two_epochs, labels).mean(axis=1) == pytest.approx(balanced)
    absent_class = np.array([0, 0, 2, 2, 2])  # no row labelled 1: the mean is over the classes present
    scores = tune.class_balanced_scores(np.array([1, 0, 1, 1, 0]), absent_class)
    assert scores.mean() == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_reference_kept_rows_are_cached_until_their_configuration_changes(tmp_path):
    data = suite.load(suite.SETTINGS["digits-sym40"], 0)

    def kept():
        return tune.reference_kept_rows("digits-sym40", data.train.images, data.noisy_labels, 2, 0, tmp_path)

    first = kept()
    assert first.shape == data.noisy_labels.shape
    cached = tmp_path / "digits-sym40-e2-s0.json"
    reference = json.loads(cached.read_text())
    reference["rows_kept"] = [False] * len(first)
    cached.write_text(json.dumps(reference))
    assert not kept().any()  # same configuration: read from the cache
    reference["config"]["mixing_strength"] = "full"  # a field the ce reference does not read
    cached.write_text(json.dumps(reference))
    assert not kept().any()  # still read from the cache
    del reference["config"]["label_smoothing"]  # recorded before the field existed: its default
    cached.write_text(json.dumps(reference))
    assert not kept().any()
    reference["config"]["lr"] = 0.5
    cached.write_text(json.dumps(reference))
    assert np.array_equal(kept(), first) and first.any()  # another configuration: made again
    assert json.loads(cached.read_text())["config"]["lr"] != 0.5


def test_time_inside_tasks_counts_overlapping_task_runs_once():
    covered = prefect_overhead.covered_seconds
    assert covered([]) == 0
    assert covered([(0, 2), (5, 6)]) == 3
    assert covered([(0, 4), (1, 2), (3, 6)]) == 6  # mapped tasks running side by side
    assert covered([(3, 6), (0, 4)]) == 6


def test_suggestion_share_diagnostic_reads_one_run_several_ways():
    results = suggestion_share.main(["--setting", "digits-sym40", "--epochs", "6", "--shares", "0", "0.05"])
    names = list(results)
    assert len(names) == 4 and names[0].startswith("uniform soft labels")
    given_accuracy = results[names[0]]["given_label_accuracy"]
    for name in names[1:]:  # the model's reading beats the given labels (64 % right)
        assert results[name]["label_recovery"] > given_accuracy, name
    with pytest.raises(SystemExit):
        suggestion_share.main(["--setting", "digits-sym40", "--shares", "1.5"])


def test_mixing_scores_by_hand():
    """Sample 0 clean, sample 1 wrong (given 0, true 1), sample 2 clean; neighbours 0<->1, 2->1."""
    given, true = np.array([0, 0, 1]), np.array([0, 1, 1])
    soft = np.eye(2)[given]
    weights = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    scores = mixing_diagnostics.mixing_scores(np.array([0.9, 0.2, 0.5]), np.array([[1], [0], [1]]), weights,
                                              soft, given, true)
    assert scores["p_clean_auroc"] == 1.0 and scores["p_clean_wrong"] == 0.2
    assert np.isclose(scores["p_clean_correct"], 0.7) and np.isclose(scores["own_weight_correct"], 0.7)
    assert np.isclose(scores["neighbor_agreement"], 1 / 3)
    assert np.isclose(scores["target_wrong_mass"], (0.1 * 1 + 0.2 * 1 + 0.5 * 1) / 3)
    assert np.isclose(scores["soft_label_wrong_mass"], 1 / 3)


def test_flip_reciprocity_tells_two_way_flips_from_one_way_ones():
    given = np.repeat(np.arange(3), 100)
    confident = np.full((300, 3), 0.05)
    confident[np.arange(300), given] = 0.9
    one_way = confident.copy()  # ten of each class look like the next class
    two_way = confident.copy()  # ten of class 0 look like 1 and ten of 1 like 0
    for probs, moved in ((one_way, {0: 1, 1: 2, 2: 0}), (two_way, {0: 1, 1: 0})):
        for source, target in moved.items():
            rows = np.flatnonzero(given == source)[:10]
            probs[rows] = 0.05
            probs[rows, target] = 0.9
    assert mixing_diagnostics.flip_reciprocity(given, one_way) == 0.0
    assert mixing_diagnostics.flip_reciprocity(given, two_way) == 1.0
    assert mixing_diagnostics.flip_reciprocity(given, confident) == 0.0  # nothing off the diagonal


def test_epoch_average_auroc_by_hand():
    given, true = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])  # sample 1 is wrong
    passes = [np.array([0.1, 0.9, 0.8, 0.7]), np.array([0.9, 0.1, 0.8, 0.7])]
    final = np.array([0.5, 0.6, 0.8, 0.7])  # alone: the wrong label ranks above sample 0's
    scores = mixing_diagnostics.epoch_average_auroc(passes, final, given, true, last=(0, 1, 4))
    assert scores == {"0": pytest.approx(2 / 3), "1": 1.0, "all": pytest.approx(2 / 3)}


def test_mixing_diagnostics_score_every_mixing_epoch(tmp_path):
    out = mixing_diagnostics.main(["--setting", "digits-sym40", "--epochs", "3", "--set", "warmup_epochs=1",
                                   "--out", str(tmp_path), "--samples", str(tmp_path / "digits.npz")])
    assert out.name == "digits-sym40-e3-warmup_epochs=1.json"
    rows = json.loads(out.read_text())["epochs"]
    assert [row["phase"] for row in rows] == ["warmup", "mixnn", "consolidate"]
    assert "p_clean_auroc" not in rows[0] and "p_clean_auroc" not in rows[2]  # no mixing there
    for row in rows[1:2]:
        assert 0.5 < row["p_clean_auroc"] <= 1 and 0.5 < row["neighbor_agreement"] <= 1
        assert 0 <= row["target_wrong_mass"] < row["soft_label_wrong_mass"] + 0.2
    for row in rows[1:]:  # every fitting epoch: both scales read the same losses
        assert 0 < row["noise_share_linear"] < 1 and 0 < row["noise_share_log"] < 1
        assert 0.5 < row["p_clean_auroc_linear"] <= 1 and 0.5 < row["p_clean_auroc_log"] <= 1
        assert 0 < row["noise_share_confident_joint"] < 1
        assert 0 <= row["noise_concentration"] < 8 / 9
        assert 0 < row["flip_reciprocity"] <= 1
    averages = json.loads(out.read_text())["label_quality_epoch_average"]
    assert list(averages) == ["0", "1", "2", "all"]  # two fitting epochs' passes before the final one
    # the extra evaluation pass leaves the run as it would be without it
    setting = suite.SETTINGS["digits-sym40"]
    data = suite.load(setting, 0)
    plain = Trainer(cpu_preset(3, "mixnn", **setting.train_options(), warmup_epochs=1), data.train.images,
                    data.noisy_labels, 10, test_images=data.test.images, test_labels=data.test.labels)
    assert [row["test_acc"] for row in plain.fit()] == [row["test_acc"] for row in rows]
    arrays = np.load(tmp_path / "digits.npz")
    assert arrays["suggestion"].shape == arrays["probs"].shape == (len(arrays["given"]), 10)
    final_given = arrays["probs"][np.arange(len(arrays["given"])), arrays["given"]]
    assert averages["0"] == detection_auroc(final_given, arrays["given"] != arrays["true"])
    assert (arrays["given"] != arrays["true"]).mean() > 0.3  # digits-sym40: 40 % redrawn
    rows = suggestion_rules.main([str(tmp_path / "digits.npz")])
    current = rows[("digits.npz", "argmax differs (the rule before 2026-11-30)")]
    assert current["changed"] == int((arrays["suggestion"].argmax(axis=1) != arrays["given"]).sum())
    for row in rows.values():
        assert row["fixed"] + row["broken"] <= row["changed"] <= current["changed"]
    flag_scores = flag_rules.main([str(tmp_path / "digits.npz"), "--out", str(tmp_path / "flags.json")])
    flags = flag_scores["files"]["digits.npz"]
    wrong = arrays["given"] != arrays["true"]
    given, soft, probs = arrays["given"], arrays["suggestion"], arrays["probs"]
    argmax_rule_outputs = sample_outputs(given, soft, np.ones(len(wrong)))
    assert flags["argmax differs (the product's rule until the thirty-fifth pass; ce's)"] == detection_scores(
        argmax_rule_outputs.is_label_issue, wrong)
    product = mixnn_outputs(given, soft, np.ones(len(wrong)), probs)
    assert flags[flag_rules.MIXNN_RULE] == detection_scores(product.is_label_issue, wrong)
    thirty_eighth = suggestion_rules.weighed_mixture_outputs(given, soft, np.ones(len(wrong)), probs)
    assert flags["weighed change, or differs and given-label mixture p < 0.5 (mixnn's, 38th pass)"] == (
        detection_scores(thirty_eighth.is_label_issue, wrong))
    assert json.loads((tmp_path / "flags.json").read_text()) == flag_scores
    # every rule against the product's, over the files scored
    against = flag_scores[f"f1 against {flag_rules.MIXNN_RULE}"]
    assert against[flag_rules.MIXNN_RULE] == {"mean": 0.0, "above": 0, "below": 0}
    for name, row in against.items():
        assert row["mean"] == pytest.approx(flags[name]["f1"] - flags[flag_rules.MIXNN_RULE]["f1"])
    for scores in flags.values():
        assert scores["n_noisy"] == int((arrays["given"] != arrays["true"]).sum()) and 0 <= scores["f1"] <= 1
    quality = quality_scores.main([str(tmp_path / "digits.npz"), "--out", str(tmp_path / "quality.json")])
    aurocs = {name: row["auroc"] for name, row in quality["files"]["digits.npz"].items()}
    assert aurocs[quality_scores.MIXNN_QUALITY] == detection_auroc(product.label_quality, wrong)
    assert aurocs["soft label on the given class (the product's until the thirty-sixth pass)"] == detection_auroc(
        argmax_rule_outputs.label_quality, wrong)
    assert json.loads((tmp_path / "quality.json").read_text()) == quality
    assert all(0.5 < auroc <= 1 for auroc in aurocs.values())  # every candidate ranks better than chance
    # the suite's row of the same run, retagged in place with the current label_quality
    row_path, = suite.main(["--settings", "digits-sym40", "--methods", "mixnn", "--epochs", "3",
                            "--set", "warmup_epochs=1", "--out", str(tmp_path / "runs"), "--arrays"])
    row = json.loads(row_path.read_text())
    # its final arrays, kept beside it: the diagnostic's of the same run, to the bit
    assert row["final_arrays"] == "arrays/digits-sym40-mixnn-e3-s0.npz"
    kept = np.load(tmp_path / "runs" / row["final_arrays"])
    assert sorted(kept.files) == sorted(arrays.files)
    for key in arrays.files:
        assert np.array_equal(kept[key], arrays[key]), key
    assert row["auroc"] == pytest.approx(aurocs[quality_scores.MIXNN_QUALITY], abs=1e-12)  # the suite scores so now
    # the row as the suite wrote it before the thirty-eighth pass (confident learning's count as
    # the suggestion, the mixture flags) and before the thirty-sixth (the soft label as label_quality)
    suggested = counted_suggestions(given, soft)
    counted = label_quality_metrics(given, suggested, probs[np.arange(len(given)), given],
                                    suggestion_rules.mixture_flags(given, soft, probs, suggested), arrays["true"])
    counted_row = {**row, **counted}
    previous = {**counted_row, "auroc": aurocs["soft label on the given class (the product's until the thirty-sixth pass)"]}
    row_path.write_text(json.dumps(previous))
    quality_scores.main([str(tmp_path / "digits.npz"), "--retag", str(row_path)])
    retagged = json.loads(row_path.read_text())
    assert retagged["auroc"] == pytest.approx(row["auroc"], abs=1e-12)
    assert retagged["label_quality_retag"]["previous_auroc"] == previous["auroc"]
    assert {k: v for k, v in retagged.items() if k not in ("auroc", "label_quality_retag")} == {
        k: v for k, v in previous.items() if k != "auroc"}
    with pytest.raises(ValueError, match="only a mixnn row not yet retagged"):
        quality_scores.main([str(tmp_path / "digits.npz"), "--retag", str(row_path)])
    row_path.write_text(json.dumps({**previous, "label_recovery": previous["label_recovery"] + 0.01}))
    with pytest.raises(ValueError, match="does not reproduce the row: label_recovery"):
        quality_scores.main([str(tmp_path / "digits.npz"), "--retag", str(row_path)])

    # rescored from its arrays under the current rules: the figures the suite writes now
    weighed_row = {**row, **label_quality_metrics(given, thirty_eighth.suggested_label, thirty_eighth.label_quality,
                                                  thirty_eighth.is_label_issue, arrays["true"])}
    row_path.write_text(json.dumps({**weighed_row, "f1": weighed_row["f1"] + 0.01}))
    with pytest.raises(ValueError, match=r"final arrays arrays/digits-sym40-mixnn-e3-s0\.npz does not reproduce the row: f1"):
        rescore_suggestions.main([str(row_path)])
    row_path.write_text(json.dumps(weighed_row))
    rescore_suggestions.main([str(row_path)])
    rescored = json.loads(row_path.read_text())
    for field in counted:
        assert rescored[field] == pytest.approx(row[field], abs=1e-12), field
        assert rescored["rescored"]["previous"][field] == weighed_row[field]
    assert rescored["rescored"]["suggestion_rule"] == MIXNN_SUGGESTION_RULE
    assert rescored["rescored"]["label_issue_rule"] == MIXNN_LABEL_ISSUE_RULE
    assert rescored["rescored"]["flag_cut"] == product.flag_cut
    kept_row = json.loads(row_path.with_name(row_path.stem + "-mixture-flags.json").read_text())
    assert kept_row == {**weighed_row, "tag": "mixture-flags", "retagged": kept_row["retagged"]}
    with pytest.raises(FileExistsError, match="rescored before"):
        rescore_suggestions.main([str(row_path)])


def test_given_label_mixture_reads_the_models_loss_on_the_given_label():
    rng = np.random.default_rng(0)
    given = rng.integers(0, 3, 400)
    probs = np.full((400, 3), 0.05)
    probs[np.arange(400), given] = 0.9  # the model agrees with the given label ...
    wrong = np.arange(400) < 100
    probs[wrong] = 0.45
    probs[wrong, given[wrong]] = 0.1  # ... except on these
    assert np.allclose(suggestion_rules.given_label_losses(given, probs)[:2], -np.log(0.1))
    p_clean = suggestion_rules.given_label_clean_probability(given, probs)
    assert (p_clean[wrong] < 0.5).all() and (p_clean[~wrong] > 0.5).all()
    with pytest.raises(ValueError, match="probs must be"):
        suggestion_rules.given_label_losses(given, probs[:10])


def test_mixing_diagnostics_until_scores_the_first_fit_without_training_it(tmp_path):
    out = mixing_diagnostics.main(["--setting", "digits-sym40", "--epochs", "5", "--until", "1",
                                   "--out", str(tmp_path)])
    assert out.name == "digits-sym40-e5-until1.json"
    result = json.loads(out.read_text())
    assert result["code"] == suite.code_version()  # the code and host it ran on, as suite rows do
    assert result["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    rows = result["epochs"]
    assert [(row["epoch"], row["phase"]) for row in rows] == [(0, "warmup"), (1, "scored, not trained")]
    assert 0 < rows[1]["noise_share_log"] < 1 and "test_acc" not in rows[1]


def test_noise_share_estimates_by_hand():
    true = np.arange(1000) % 10
    wrong = true < 3  # 30 % of the labels, one class up
    given = np.where(wrong, (true + 1) % 10, true)
    independent_mistakes = (np.arange(1000) // 10) % 5 == 0  # 20 %, to a class no label names
    predicted = np.where(independent_mistakes, (true + 5) % 10, true)
    estimates = noise_share_estimates.noise_share_estimates(given, true, np.eye(10)[predicted])
    assert estimates["wrong"] == 0.3 and estimates["model_error"] == 0.2
    assert estimates["disagreement"] == pytest.approx(0.7 * 0.2 + 0.3)
    assert estimates["corrected"] == pytest.approx(0.3)  # mistakes independent of the noise
    assert estimates["predicts_given_when_wrong"] == 0.0
    learned_the_noise = noise_share_estimates.noise_share_estimates(given, true, np.eye(10)[given])
    assert learned_the_noise["disagreement"] == 0.0 and learned_the_noise["predicts_given_when_wrong"] == 1.0
    assert learned_the_noise["corrected"] < 0  # the correction cannot see noise the model learned
    wrong_everywhere = noise_share_estimates.noise_share_estimates(given, true, np.eye(10)[(true + 5) % 10])
    assert wrong_everywhere["model_error"] == 1.0 and np.isnan(wrong_everywhere["corrected"])


def test_noise_share_estimates_name_a_file_without_the_predictions(tmp_path):
    samples = tmp_path / "other.npz"
    np.savez(samples, given=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"other\.npz has no true, probs array"):
        noise_share_estimates.main([str(samples)])


def test_noise_share_estimates_read_the_first_fit_samples_of_the_diagnostic(tmp_path):
    samples = tmp_path / "first-fit.npz"
    mixing_diagnostics.main(["--setting", "digits-sym40", "--epochs", "5", "--until", "1",
                             "--out", str(tmp_path), "--samples", str(samples)])
    estimates = noise_share_estimates.main([str(samples)])["first-fit"]
    assert 0.3 < estimates["wrong"] < 0.4  # 40 % symmetric, true class included
    assert 0 < estimates["model_error"] < estimates["disagreement"] < 1


def test_paired_comparison_of_two_tuned_values_on_the_same_rows(tmp_path, capsys):
    tuned = tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--grid", "lr=0.02,0.1",
                       "--folds", "2", "--out", str(tmp_path)])
    result = json.loads(tuned.read_text())
    summary = compare_tune.main([f"{tuned}:0.02", f"{tuned}:0.1"])
    data = suite.load(suite.SETTINGS["digits-sym40"], 0)
    held_rows = np.asarray(result["held_rows"])
    right = [np.asarray(result["results"][v]["held_out_predictions"]) == data.noisy_labels[held_rows]
             for v in ("0.02", "0.1")]
    assert summary["noisy"]["difference"] == pytest.approx(100 * (right[1].mean() - right[0].mean()))
    assert summary["noisy"]["difference"] != 0 and 0 < summary["noisy"]["standard_error"] < 5
    judged = [np.asarray(result["results"][v]["held_out_predictions"]) == data.train.labels[held_rows]
              for v in ("0.02", "0.1")]
    assert summary["clean judge"]["second"] == pytest.approx(judged[1].mean())
    noisy = data.noisy_labels[held_rows]
    balanced = [np.mean([r[noisy == c].mean() for c in np.unique(noisy)]) for r in right]
    assert summary["balanced"]["difference"] == pytest.approx(100 * (balanced[1] - balanced[0]))
    reference = json.loads((tmp_path / "reference" / "digits-sym40-e1-s0.json").read_text())
    kept = np.asarray(reference["rows_kept"])[held_rows]
    balanced_kept = [np.mean([r[kept & (noisy == c)].mean() for c in np.unique(noisy[kept])]) for r in right]
    balanced_kept_difference = 100 * (balanced_kept[1] - balanced_kept[0])
    assert summary["balanced kept"]["difference"] == pytest.approx(balanced_kept_difference)
    assert len(summary["kept"]["per_fold_difference"]) == 2
    for name in ("noisy", "clean judge"):  # every held-out row, folds of equal size
        assert len(summary[name]["per_fold_difference"]) == 2
        assert np.mean(summary[name]["per_fold_difference"]) == pytest.approx(summary[name]["difference"], abs=0.2)
    assert "second - first" in capsys.readouterr().out
    with pytest.raises(ValueError, match="name one as"):  # two values in the file: which?
        compare_tune.main([str(tuned), f"{tuned}:0.1"])
    with pytest.raises(ValueError, match="no such tune result file"):
        compare_tune.main([f"{tmp_path / 'missing.json'}:0.02", f"{tuned}:0.1"])
    with pytest.raises(ValueError, match="holds no value '0.5'"):
        compare_tune.main([f"{tuned}:0.5", f"{tuned}:0.1"])
    assert compare_tune.recorded_value("false", ["False", "True"], tuned) == "False"  # as on --grid
    with pytest.raises(ValueError, match="holds no value 'nope'"):
        compare_tune.recorded_value("nope", ["False", "True"], tuned)
    assert compare_tune.paired_difference(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 1])) == pytest.approx(
        (25.0, 100 * np.std([0, -1, 1, 1], ddof=1) / 2))


def test_score_agreement_pairs_the_candidates_that_held_out_the_same_rows(tmp_path):
    common = ["--setting", "digits-sym40", "--method", "ce", "--epochs", "1", "--folds", "2",
              "--out", str(tmp_path)]
    tuned = tune.main([*common, "--grid", "lr=0.02,0.1"])
    tune.main([*common, "--grid", "lr=0.5"])
    tune.main([*common, "--grid", "lr=0.02", "--seed", "1"])  # other rows: in no pair
    summary = score_agreement.main([str(tmp_path)])["digits-sym40"]
    assert summary["pairs"] == 3 and len(summary["differences"]) == 3
    compared = compare_tune.main([f"{tuned}:0.02", f"{tuned}:0.1"])
    first_pair = summary["differences"][0]  # the file's own two values, in its order
    for score in ("noisy", "kept", "balanced", "balanced kept", "clean judge"):
        assert first_pair[score][0] == pytest.approx(compared[score]["difference"])
    assert summary["noisy"]["pairs"] == 3 and -1 <= summary["noisy"]["correlation"] <= 1


def test_score_agreement_names_a_missing_folder_and_a_bad_result_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        score_agreement.main([str(tmp_path / "missing")])
    assert "no such folder" in capsys.readouterr().err
    assert score_agreement.main([str(tmp_path)]) == {}  # nothing to pair, said so
    assert "no two tune candidates" in capsys.readouterr().out
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"setting": "no-such-setting", "held_rows": [0, 1]}))
    with pytest.raises(ValueError, match="unknown.json: setting 'no-such-setting'"):
        score_agreement.main([str(tmp_path)])
    unknown.unlink()
    (tmp_path / "damaged.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged.json is not valid JSON"):
        score_agreement.main([str(tmp_path)])


def test_score_agreement_by_hand():
    pairs = [{"noisy": (1.0, 0.1), "clean judge": (2.0, 0.5)},  # clear, same sign
             {"noisy": (0.5, 0.1), "clean judge": (-3.0, 0.5)},  # clear, other sign
             {"noisy": (-0.5, 0.1), "clean judge": (0.4, 0.5)}]  # within two standard errors
    correlation, same_sign, clear = score_agreement.agreement(pairs, "noisy")
    assert correlation == pytest.approx(np.corrcoef([1.0, 0.5, -0.5], [2.0, -3.0, 0.4])[0, 1])
    assert (same_sign, clear) == (0.5, 2)
    assert np.isnan(score_agreement.agreement(pairs[:2], "noisy")[0])  # no correlation of two pairs
    differences = score_agreement.pair_differences({"a": {"noisy": np.array([1, 0, 0, 1])},
                                                    "b": {"noisy": np.array([1, 1, 1, 1])}})
    assert differences == [{"noisy": pytest.approx((50.0, 100 * np.std([0, 1, 1, 0], ddof=1) / 2))}]


def test_scaling_keeps_a_variants_ivf_sample_out_of_the_files_the_cost_targets_read(tmp_path):
    with pytest.raises(SystemExit):  # refused before anything is measured
        scaling.main(["--sizes", "600", "--ivf-training-points-per-cell", "40",
                      "--out", str(tmp_path / "scaling-x.json")])
    assert not (tmp_path / "scaling-x.json").exists()
    for sample in ("0", "-3"):  # a cell's k-means sample needs at least one point
        with pytest.raises(SystemExit):
            scaling.main(["--sizes", "600", "--ivf-training-points-per-cell", sample,
                          "--out", str(tmp_path / "ivf_sample.json")])
    assert not (tmp_path / "ivf_sample.json").exists()


def test_scaling_harness_times_a_mixing_epoch_after_the_trainers_own_mixture_fit(tmp_path):
    # the harness once fitted the mixture beside the trainer, which then had no noise strength
    # to scale its mixing weights with: the timed epoch raised before it mixed
    train, _ = suite.digits()
    row = scaling.measure(600, train.images[:, 0], train.labels, tmp_path, repeats=2)
    assert row["n"] == 600 and row["ingest_images_per_s"] > 0
    for key in ("eval_pass_s", "feature_write_s", "feature_read_s", "index_write_s", "exact_query_s",
                "ivf_query_s", "mixture_fit_s", "ce_epoch_s", "mixnn_train_s"):
        assert row[key] > 0, key
    assert report.times_run_files(row)
    # every counted part of the epoch is its fastest repeat, the single times kept beside it
    assert row["mixture_fit_s"] == min(row["mixture_fit_each_s"]) and len(row["mixture_fit_each_s"]) == 2
    fastest_search = min(row["auto_each_s"], key=lambda each: each[0] + each[1])
    assert [row["auto_build_s"], row["auto_query_s"], row["index_write_s"]] == fastest_search
    assert row["feature_write_s"] + row["feature_read_s"] == pytest.approx(min(row["feature_files_each_s"]))


def test_interleaved_cost_targets_read_only_measurements_that_say_when_they_were_made(tmp_path):
    def row(n, ce, evaluation, write, build, query, fit, train, memory_mb, **files):
        return {"n": n, "ce_epoch_s": ce, "eval_pass_s": evaluation, "feature_write_s": write,
                "auto_build_s": build, "auto_query_s": query, "mixture_fit_s": fit, "mixnn_train_s": train,
                "peak_rss_mb": memory_mb, **files}

    (tmp_path / "scaling-old.json").write_text(json.dumps({"machine": "2 cores", "rows": []}))
    (tmp_path / "scaling-new.json").write_text(json.dumps({
        "measured_at": "2026-12-05T11:40:00Z", "machine": {"threads": 2},
        "rows": [row(20000, 5.0, 1.0, 0.1, 0.1, 0.2, 0.1, 5.5, 1024),     # 7.0 s, 0.5 s of it search + fit + write
                 row(60000, 15.0, 3.0, 0.5, 1.0, 1.0, 0.1, 18.4, 2560),   # 24.0 s, 2.6 s of it
                 # a run's files: + 0.3 s reading the table back, + 0.2 s writing the index -> 24.5 s, 3.1 s
                 row(60000, 15.0, 3.0, 0.5, 1.0, 1.0, 0.1, 18.4, 1024, feature_read_s=0.3, index_write_s=0.2)]}))
    records = report.load_interleaved_costs(tmp_path)
    assert [record["file"] for record in records] == ["scaling-new.json"]
    lines = report.interleaved_cost_table(records).splitlines()[2:]
    assert lines == [
        "| scaling-new.json (2026-12-05T11:40:00Z) | 2 | 20,000 | one table write | 5.00 | 7.00 | 1.40x (PASS) | "
        "7.14 % | 1.00 GB |",
        "| scaling-new.json (2026-12-05T11:40:00Z) | 2 | 60,000 | one table write | 15.00 | 24.00 | 1.60x (**MISS**) | "
        "10.83 % (**MISS**) | 2.50 GB (**MISS**) |",
        "| scaling-new.json (2026-12-05T11:40:00Z) | 2 | 60,000 | a run's | 15.00 | 24.50 | 1.63x (**MISS**) | "
        "12.65 % (**MISS**) | 1.00 GB (PASS) |"]


def test_report_names_a_result_file_that_is_not_valid_json(tmp_path):
    (tmp_path / "scaling-broken.json").write_text('{"measured_at": ')
    with pytest.raises(ValueError, match="scaling-broken.json is not valid JSON"):
        report.load_interleaved_costs(tmp_path)
    with pytest.raises(ValueError, match="scaling-broken.json is not valid JSON"):
        report.load_runs(tmp_path)


def test_relabel_candidates_by_hand():
    given = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    votes = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    likelihood = np.array([[0.75, 1 / 6], [0.25, 5 / 6]])  # P(given j | true k)
    run = ExportedModel(None, {}, None, np.zeros(1, dtype=np.int64), False, likelihood, temperature=1.0)
    verdicts = relabel_scores.candidate_outputs(given, probs, votes, run, flag_cut=0.4)
    mean = verdicts[relabel_scores.MEAN]  # [.95 .05], [.2 .8], [.6 .4]
    assert mean.suggested_label.tolist() == [0, 1, 0]
    assert mean.is_label_issue.tolist() == [False, True, True]
    assert np.allclose(mean.label_quality, [0.95, 0.2, 0.4])
    # weighed: [.7125 .0083], [.15 .1333], [.15 .3333] before normalising: every given label stays
    product = verdicts[relabel_scores.PRODUCT]
    assert product.suggested_label.tolist() == [0, 0, 1]
    assert not product.is_label_issue.any()
    assert np.allclose(product.label_quality, [0.7125 / (0.7125 + 0.05 / 6), 0.15 / (0.15 + 0.8 / 6),
                                               (0.4 * 5 / 6) / (0.15 + 0.4 * 5 / 6)])
    assert verdicts["prediction alone"].suggested_label.tolist() == [0, 1, 1]
    assert verdicts["prediction alone"].is_label_issue.tolist() == [False, True, False]
    assert verdicts["vote alone"].suggested_label.tolist() == [0, 1, 0]
    manifest_rules = verdicts["mean, with the training manifest's rules of the 35th-37th passes"]
    assert np.allclose(manifest_rules.label_quality, [0.9, 0.4, 0.8])  # the prediction on the given class
    # with the training run's flag cut, a label is flagged where its probability of being wrong
    # (1 - label_quality: 0.012, 0.471, 0.0) reaches it, though its suggestion keeps it
    cut = verdicts[relabel_scores.PRODUCT + ", flagged from the training run's flag cut (not adopted)"]
    assert cut.suggested_label.tolist() == [0, 0, 1] and cut.is_label_issue.tolist() == [False, True, False]
    assert cut.flag_cut == 0.4


def test_relabel_bench_scores_the_relabel_flows_own_verdict(tmp_path):
    setting = suite.SETTINGS["digits-sym40"]
    data = suite.load(setting, 0)
    trainer = Trainer(cpu_preset(2, "mixnn", **setting.train_options(), warmup_epochs=1), data.train.images,
                      data.noisy_labels, 10)
    trainer.fit()
    exported, outputs, _ = relabel_scores.exported_model(trainer)
    assert np.array_equal(exported.train_labels, outputs.suggested_label)
    assert exported.temperature == outputs.suggestion_temperature is not None
    given = data.test.labels.copy()
    given[::3] = (given[::3] + 1) % 10
    flow_verdict = score_samples(exported, data.test.images, given, num_neighbors=5)
    verdict = relabel_scores.candidate_outputs(given, *predictions_and_votes(exported, data.test.images, 5), exported,
                                               outputs.flag_cut)
    product = verdict[relabel_scores.PRODUCT]
    assert np.array_equal(flow_verdict["suggested_label"], product.suggested_label)
    assert np.array_equal(flow_verdict["is_label_issue"], product.is_label_issue)
    assert np.allclose(flow_verdict["label_quality"], product.label_quality)


def test_relabel_bench_end_to_end_on_an_incoming_fashion_mnist_batch(tmp_path):
    from bench.datasets import data_root

    if not (data_root() / "fashion-mnist").exists():
        pytest.skip(f"benchmark data absent: {data_root() / 'fashion-mnist'} (set MIXNN_DATA_ROOT)")
    batch, noisy = relabel_scores.incoming_batch("fmnist20k-sym50", 300, seed=1)
    training = suite.load(suite.SETTINGS["fmnist20k-sym50"], 0).train
    seen = {image.tobytes() for image in training.images}
    assert sum(image.tobytes() in seen for image in batch.images) <= 3  # other images (a few duplicates exist)
    assert 0.35 < (noisy != batch.labels).mean() < 0.55  # 50 % redrawn, the true class included
    result = relabel_scores.main(["--setting", "fmnist20k-sym50", "--epochs", "2", "--set", "warmup_epochs=1",
                                  "--incoming", "300", "--neighbors", "1", "10", "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["incoming"] == result["incoming"]
    assert result["incoming"]["wrong_fraction"] == pytest.approx((noisy != batch.labels).mean())
    by_k = {int(k): rows for k, rows in json.loads((tmp_path / "r.json").read_text())["scores_by_k"].items()}
    assert sorted(by_k) == [1, 10]
    assert by_k[1]["prediction alone"] == by_k[10]["prediction alone"]  # q does not depend on K
    assert by_k[1]["vote alone"] != by_k[10]["vote alone"]
    manifests = "given label weighed, expected-F1 flags (the manifest's)"
    assert sorted(result["run_rules"]) == sorted(["confident learning on the soft labels (until the thirty-eighth "
                                                  "pass)", "given label weighed, mixture flags (thirty-eighth pass)",
                                                  manifests])
    assert result["run_rules"][manifests] == {key: result["run"][key] for key in result["run_rules"][manifests]}
    for rows in by_k.values():
        assert len(rows) == 8
        for row in rows.values():
            assert row["n_noisy"] == int((noisy != batch.labels).sum())
            assert 0.6 < row["auroc"] <= 1 and 0.5 < row["label_recovery"] <= 1  # 2 epochs already rank


def test_tag_pairs_subtracts_the_untagged_twin_of_each_seed(tmp_path, capsys):
    def row(method, seed, tag="", test=0.8, recovery=0.9):
        return {"setting": "fmnist20k-sym20", "method": method, "epochs": 20, "seed": seed, "tag": tag,
                "test_acc_last": test, "label_recovery": recovery, "f1": 0.5, "auroc": 0.9}

    rows = [row("mixnn", 0), row("mixnn", 0, "opt", test=0.81, recovery=0.89), row("ce", 0, test=0.82),
            row("mixnn", 1, "opt"),  # no untagged twin
            row("mixnn", 2), row("mixnn", 2, "other", test=0.7)]  # another tag
    for number, values in enumerate(rows):
        (tmp_path / f"{number}.json").write_text(json.dumps(values))
    pairs = tag_pairs.main(["--tag", "opt", "--runs", str(tmp_path)])
    assert list(pairs) == ["fmnist20k-sym20"] and list(pairs["fmnist20k-sym20"]) == [0]
    seed_0 = pairs["fmnist20k-sym20"][0]
    assert seed_0["test_acc_last"] == pytest.approx(0.01) and seed_0["label_recovery"] == pytest.approx(-0.01)
    assert seed_0["f1"] == 0 and seed_0["ce_test"] == 0.82
    assert "test +1.0000 (1/1 up), recovery -1.0000 (0/1 up)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no mixnn row at 20 epochs tagged 'none'"):
        tag_pairs.main(["--tag", "none", "--runs", str(tmp_path)])
    with pytest.raises(SystemExit, match="missing: no such folder"):
        tag_pairs.main(["--tag", "opt", "--runs", str(tmp_path / "missing")])
