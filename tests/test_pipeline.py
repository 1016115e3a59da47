"""The mixnn flow end to end on digits: outputs, resume after SIGKILL, skipping, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from flows.mixnn_flow import mixnn
from mixnn_core.label_posterior import weighed_posterior
from mixnn_core.outputs import (
    MIXNN_LABEL_ISSUE_RULE,
    MIXNN_LABEL_QUALITY,
    MIXNN_SUGGESTION_RULE,
)
from mixnn_core.review_flags import flag_cut

PROJECT = Path(__file__).resolve().parents[1]
from tests.conftest import DIGITS_RUN as RUN  # noqa: E402

MANIFEST_COLUMNS = ["sample_id", "key", "source_ref", "given_label", "given_label_name",
                    "suggested_label", "suggested_label_name", "suggested_confidence",
                    "label_quality", "is_label_issue", "p_clean", "true_label", "is_noisy",
                    "soft_label"]


@pytest.fixture(scope="module")
def finished_run(digits_run):
    return digits_run


def test_run_directory_holds_every_promised_output(finished_run):
    run_dir, result = finished_run
    for name in ["manifest.parquet", "manifest.csv", "quarantine.parquet", "model/model.pt",
                 "model/model.torchscript.pt", "model/model_card.json", "report/report.md",
                 "run.json", "config.json"]:
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "report").glob("*.png")) == [
        "audit_sample.png", "clean_probability.png", "confusion_given_vs_suggested.png", "loss_mixture.png",
        "suspects.png", "training_curves.png"]
    # the audit sample lists changed labels of this run, each one a manifest row
    manifest = pd.read_parquet(run_dir / "manifest.parquet").set_index("sample_id")
    report = (run_dir / "report" / "report.md").read_text(encoding="utf-8")
    audit_lines = report.split("## Audit sample")[1].split("## Per class")[0].splitlines()
    audit_ids = [int(line.split("|")[2]) for line in audit_lines if line.startswith("| ") and line[2].isdigit()]
    changed = manifest["suggested_label"] != manifest["given_label"]
    assert len(audit_ids) == min(30, int(changed.sum())) > 0
    assert changed.loc[audit_ids].all()
    assert len(list((run_dir / "shards").glob("*.tar"))) >= 1
    # warm-up 1 and consolidation 1 of 6 epochs: epochs 1..5 fit the mixture to their features,
    # epochs 1..4 mix, each with its faiss index
    assert [p.name for p in sorted((run_dir / "features").glob("epoch=*.parquet"))] == [
        f"epoch={e:03d}.parquet" for e in range(1, 6)]
    assert [p.name for p in sorted((run_dir / "index").glob("epoch=*.faiss"))] == [
        f"epoch={e:03d}.faiss" for e in range(1, 5)]
    mixtures = {e: json.loads((run_dir / "mixture" / f"epoch={e:03d}.json").read_text()) for e in (4, 5)}
    # the weights training uses are never below the mixture's (clean_probability=
    # "posterior_scale_floor"); the gate (gate_under="flips") stays off in the consolidation epoch
    # (5) too, because the first fit read digits' symmetric noise as such
    assert mixtures[4]["n_gated"] == mixtures[5]["n_gated"] == 0
    assert mixtures[5]["noise_read_as"] == "symmetric"
    assert all(mixtures[e]["mean_p_clean_used"] >= mixtures[e]["mean_p_clean"] for e in (4, 5))
    assert result["counts"] == {"n_input": 1797, "n_ingested": 1797, "n_quarantined": 0}


def test_in_batch_neighbour_scope_and_counted_noise_run_through_the_flow(prefect_server, tmp_path):
    """neighbor_scope="batch" (the ablation of the reference code's in-batch search): each mixing
    epoch saves neighbours found within random groups of batch_size samples of that epoch's
    features, and no index over the whole set; every sample reaches the manifest. In the same run,
    noise_estimate="confident_joint" reads the (default) estimated-noise strength of the correction
    and the mixing from the first fit's predictions, and consolidation_mixing="eased" mixes in
    the first of two consolidation epochs (neighbour share 1/2) and not in the last."""
    from mixnn_core.confident_learning import confident_joint_noise_share
    from mixnn_core.correction import noise_odds_strength
    from mixnn_core.files import read_vector_column
    from mixnn_core.knn import neighbors_within_groups

    run_dir = tmp_path / "batch-scope"
    options = {"neighbor_scope": "batch", "noise_estimate": "confident_joint",
               "consolidation_mixing": "eased", "consolidation_epochs": 2}
    mixnn(run_dir=str(run_dir), **{**RUN, "epochs": 4,  # warm-up 1, mixing 1, consolidation 2 (eased) and 3
                                   "train_options": {**RUN["train_options"], **options}})
    assert not list((run_dir / "index").glob("epoch=*.faiss"))
    for epoch in (1, 2):
        features = read_vector_column(pq.read_table(run_dir / "features" / f"epoch={epoch:03d}.parquet"), "feature")
        saved = np.load(run_dir / "index" / f"epoch={epoch:03d}.neighbors.npy", allow_pickle=False)
        assert np.array_equal(saved, neighbors_within_groups(features, 1, 128, seed=(0, epoch)))
    assert not (run_dir / "index" / "epoch=003.neighbors.npy").exists()  # the last epoch trains un-mixed
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    assert len(manifest) == 1797
    first_probs = read_vector_column(pq.read_table(run_dir / "features" / "epoch=001.parquet"), "probs")
    share = confident_joint_noise_share(manifest.sort_values("sample_id")["given_label"].to_numpy(), first_probs)
    history = json.loads((run_dir / "run.json").read_text())["history"]
    assert 0.2 < share < 0.6  # digits with 40 % symmetric noise (36 % wrong)
    assert [row["noise_strength"] for row in history[1:]] == [pytest.approx(noise_odds_strength(share))] * 3


def test_manifest_schema_and_contents(finished_run):
    run_dir, _ = finished_run
    table = pq.read_table(run_dir / "manifest.parquet")
    assert table.column_names == MANIFEST_COLUMNS
    assert table.schema.metadata[b"mixnn_manifest_version"] == b"5"
    manifest = table.to_pandas()
    assert manifest["sample_id"].tolist() == list(range(1797))
    soft = np.stack(manifest["soft_label"].to_numpy())
    assert soft.shape == (1797, 10) and np.allclose(soft.sum(axis=1), 1, atol=1e-4)
    # the suggestion: the final predictions, tempered to the card's temperature, with the given
    # label weighed through the confident joint of given labels and soft labels; flagged: the
    # labels likeliest wrong by that posterior, as many as maximise the F1 it expects (the cut
    # in the card), every changed label among them
    given = manifest["given_label"].to_numpy()
    final_probs = np.stack(pd.read_parquet(run_dir / "features" / "final.parquet")["probs"].to_numpy())
    card = json.loads((run_dir / "model" / "model_card.json").read_text())
    posterior, temperature = weighed_posterior(given, final_probs, soft)
    assert card["given_label_evidence"]["temperature"] == pytest.approx(temperature, rel=1e-3)
    suggested = manifest["suggested_label"].to_numpy()
    assert (suggested != posterior.argmax(axis=1)).sum() <= 2  # the file's probabilities are float32
    changed = suggested != given
    assert changed.sum() > 300  # of about 720 injected wrong labels
    flagged = manifest["is_label_issue"].to_numpy()
    wrong = 1 - posterior[np.arange(len(given)), given]
    cut = card["given_label_evidence"]["flag_cut"]
    assert cut == pytest.approx(flag_cut(wrong), rel=1e-3)
    assert (flagged != (wrong >= cut)).sum() <= 2  # float32 probabilities again
    assert flagged[changed].all() and flagged[wrong > 0.501].all()  # every label likelier wrong than right
    assert table.schema.metadata[b"mixnn_label_issue_rule"] == MIXNN_LABEL_ISSUE_RULE.encode()
    assert table.schema.metadata[b"mixnn_suggestion_rule"] == MIXNN_SUGGESTION_RULE.encode()
    rows = np.arange(1797)
    # the final model's prediction on the given label, not the soft label's mass on it
    assert np.allclose(manifest["label_quality"], final_probs[rows, given], atol=1e-6)
    assert not np.allclose(manifest["label_quality"], soft[rows, given], atol=1e-3)
    assert table.schema.metadata[b"mixnn_label_quality"] == MIXNN_LABEL_QUALITY.encode()
    labels = pd.read_parquet(run_dir / "labels.parquet")
    assert (manifest["given_label"] == labels["given_label"]).all()
    assert (manifest["is_noisy"] == (manifest["given_label"] != manifest["true_label"])).all()
    csv = pd.read_csv(run_dir / "manifest.csv")
    assert list(csv.columns) == MANIFEST_COLUMNS[:-1]
    assert (csv["suggested_label"] == manifest["suggested_label"]).all()
    # six epochs already fix most of the injected noise
    assert (manifest["suggested_label"] == manifest["true_label"]).mean() > 0.85


def test_exported_model_loads_without_this_code(finished_run):
    run_dir, _ = finished_run
    card = json.loads((run_dir / "model" / "model_card.json").read_text())
    assert card["input_shape"] == [1, 8, 8] and card["classes"] == [str(i) for i in range(10)]
    scripted = torch.jit.load(str(run_dir / "model" / "model.torchscript.pt"))
    from sklearn.datasets import load_digits
    pixels = torch.tensor(np.round(load_digits().images[:200] * 255 / 16) / 255, dtype=torch.float32)
    mean, std = card["normalization"]["mean"][0], card["normalization"]["std"][0]
    logits = scripted((pixels[:, None] - mean) / std)
    assert logits.shape == (200, 10)
    accuracy = (logits.argmax(1).numpy() == load_digits().target[:200]).mean()
    assert accuracy > 0.8


def test_run_json_records_configuration_versions_timings_and_metrics(finished_run):
    run_dir, _ = finished_run
    run = json.loads((run_dir / "run.json").read_text())
    assert run["configuration"]["train"]["seed"] == 0
    assert run["versions"]["torch"].startswith("2.14.1")
    assert {"ingest", "train", "features", "index", "export", "report"} <= set(run["stage_seconds"])
    assert run["metrics"]["n_samples"] == 1797 and 0.9 < run["metrics"]["auroc"] <= 1
    assert len(run["history"]) == 6


def test_noise_strength_of_the_first_fit_reaches_the_metrics_report_and_summary(finished_run):
    """The odds of noise the first mixture fit (epoch 1, labels as given, no gate) reads set the
    strength of the default mixing and correction; the user sees it in the metrics, the report and
    the command's summary."""
    from flows.cli import summary_text
    from mixnn_core.correction import noise_odds_strength

    run_dir, result = finished_run
    first_fit = json.loads((run_dir / "mixture" / "epoch=001.json").read_text())
    strength = result["metrics"]["noise_strength"]
    assert strength == pytest.approx(noise_odds_strength(1 - first_fit["mean_p_clean"]))
    assert 0.3 < strength <= 1  # digits with 40 % symmetric noise (36 % wrong)
    report = (run_dir / "report" / "report.md").read_text(encoding="utf-8")
    assert f"| Noise strength (odds of a noisy label by the first mixture fit, at most 1) | {strength:.4f} |" in report
    assert "read few noisy labels" not in report
    assert f"noise strength {strength:.3f}" in summary_text(result)
    # how the labels the first fit contradicts spread over the classes: evenly under symmetric noise
    concentration = result["metrics"]["noise_concentration"]
    history = json.loads((run_dir / "history.json").read_text())
    assert concentration == history[-1]["noise_concentration"] < 0.5
    assert "| Noise concentration (first fit; below 0.5" in report
    assert f"noise concentration {concentration:.3f} (the labels the first fit contradicts point evenly" in summary_text(result)
    estimate = json.loads((run_dir / "run.json").read_text())["configuration"]["train"]["noise_estimate"]
    assert result["metrics"]["noise_estimate"] == estimate
    assert f"| Noise estimate (what the noise strength was read from) | {estimate} |" in report


def test_summary_says_why_the_noise_strength_is_0_under_flips_by_mixture_symmetric():
    """The command's summary names noise_estimate="mixture_symmetric" as the reason for a strength of 0
    only where the first fit read flips; otherwise the strength is the mixture's odds of noise."""
    from flows.cli import summary_text

    def strength_line(estimate, concentration):
        metrics = {"n_suggested_changes": 0, "n_label_issues": 0, "noise_strength": 0.0,
                   "noise_estimate": estimate, "noise_concentration": concentration}
        result = {"metrics": metrics, "counts": {"n_ingested": 9, "n_quarantined": 0},
                  "manifest": "m", "model": "d", "report": "r"}
        return next(line for line in summary_text(result).splitlines() if "noise strength" in line)

    assert "0 by noise_estimate=mixture_symmetric, as the first fit read flips" in strength_line(
        "mixture_symmetric", 0.7)
    for estimate, concentration in (("mixture_symmetric", 0.3), ("mixture", 0.7)):
        assert "odds of a noisy label by the first mixture fit" in strength_line(estimate, concentration)


def test_rerun_skips_finished_work(finished_run):
    run_dir, _ = finished_run
    before = (run_dir / "manifest.parquet").read_bytes()
    features = {p: p.stat().st_mtime_ns for p in (run_dir / "features").glob("epoch=*.parquet")}
    result = mixnn(run_dir=str(run_dir), **RUN)
    assert json.loads((run_dir / "run.json").read_text())["resumed_from_epoch"] == 6
    assert {p: p.stat().st_mtime_ns for p in features} == features
    assert pd.read_parquet(run_dir / "manifest.parquet").equals(
        pd.read_parquet(pd.io.common.BytesIO(before)))
    assert result["counts"]["n_ingested"] == 1797


def test_rerun_with_another_configuration_is_refused(finished_run):
    run_dir, _ = finished_run
    with pytest.raises(ValueError, match="different configuration"):
        mixnn(run_dir=str(run_dir), **{**RUN, "seed": 1})


def test_killed_run_resumes_to_the_same_manifest_past_a_damaged_checkpoint(finished_run, tmp_path):
    reference_dir, _ = finished_run
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "flows.cli", "clean", "digits", "--run-dir", str(run_dir),
               "--epochs", "6", "--noise-mode", "symmetric", "--noise-rate", "0.4",
               "--train-option", "lr=0.05"]  # as RUN
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "epoch=002.pt").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (run_dir / "manifest.parquet").exists()
    # the newest checkpoint damaged outside the tool: named, and deleting it resumes from the spare
    newest = max((run_dir / "checkpoints").glob("epoch=*.pt"))
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{re.escape(str(newest))} is not a readable torch file .*"
                                         "delete it to resume from the checkpoint before it"):
        mixnn(run_dir=str(run_dir), **RUN)
    newest.unlink()
    mixnn(run_dir=str(run_dir), **RUN)
    # resumed after the spare, the epoch before the deleted one (which was epoch 2 or later)
    newest_epoch = int(re.fullmatch(r"epoch=(\d+)\.pt", newest.name).group(1))
    assert newest_epoch >= 2
    assert json.loads((run_dir / "run.json").read_text())["resumed_from_epoch"] == newest_epoch
    resumed = pd.read_parquet(run_dir / "manifest.parquet")
    reference = pd.read_parquet(reference_dir / "manifest.parquet")
    pd.testing.assert_frame_equal(resumed, reference)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)


def test_cli_fails_with_a_one_line_reason_on_a_missing_path(tmp_path):
    result = run_cli("clean", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mixnn: error:") and "nowhere" in last


def test_cli_rejects_a_single_class_dataset_before_training(tmp_path):
    from PIL import Image
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((8, 8), i * 40, dtype=np.uint8)).save(folder / f"{i}.png")
    result = run_cli("clean", str(tmp_path / "images"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "class" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_summary_points_to_the_audit_sample_only_when_labels_changed():
    from flows.cli import summary_text

    result = {"counts": {"n_ingested": 10, "n_quarantined": 0}, "manifest": "m", "model": "d", "report": "r",
              "metrics": {"n_suggested_changes": 3, "n_label_issues": 4}}
    assert "audit sample" in summary_text(result)
    assert "noise strength" not in summary_text(result)  # ce / mixup runs fit no mixture
    result["metrics"]["n_suggested_changes"] = 0
    assert "audit sample" not in summary_text(result)
