"""Tests for mixnn_core.report: every plot is a real PNG, the markdown links them, shows the
summary, lists the suspects in order and stays a valid table when names contain pipes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mixnn_core.files import write_json_atomic
from mixnn_core.gmm import mixture_input
from mixnn_core.report import (
    AUDIT_SIZE,
    EXPORTED_RECOVERY_LABEL,
    PLOT_FILES,
    audit_sample,
    plot_training_curves,
    render_markdown,
    strength_zeroed_under_flips,
    suspects_table,
    write_report,
)
from tasks.report import mixture_snapshots
from tasks.run_files import RunFiles

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
# Sample ids forced to the lowest label qualities; 3 and 11 tie, so 3 must come first
# (the other qualities are clipped to at least 0.1, so they tie too).
WORST_QUALITIES = {7: 0.01, 11: 0.02, 3: 0.02, 5: 0.03}
EXPECTED_WORST_IDS = [7, 3, 11, 5]
SUMMARY = {
    "n_input": 1234, "n_ingested": 1200, "n_quarantined": 34, "n_label_issues": 87,
    "method": "mixnn", "epochs": 12,
}


def make_manifest(n_samples: int, class_names: list[str], *, with_truth: bool,
                  rng: np.random.Generator) -> pd.DataFrame:
    """A manifest in which about 30 % of given labels are wrong and the model mostly finds them."""
    n_classes = len(class_names)
    true_label = rng.integers(0, n_classes, n_samples)
    is_noisy = rng.random(n_samples) < 0.3
    given_label = np.where(is_noisy, (true_label + rng.integers(1, n_classes, n_samples)) % n_classes,
                           true_label)
    label_quality = np.where(is_noisy, rng.beta(2, 8, n_samples), rng.beta(8, 2, n_samples))
    label_quality = np.clip(label_quality, 0.1, 1.0)
    sample_id = np.arange(n_samples)
    for worst_id, quality in WORST_QUALITIES.items():
        label_quality[sample_id == worst_id] = quality
    suggested_label = np.where(label_quality < 0.5, true_label, given_label)
    manifest = pd.DataFrame({
        "sample_id": sample_id,
        "key": [f"{index:06d}" for index in sample_id],
        "source_ref": [f"shard-000.tar#{index:06d}" for index in sample_id],
        "given_label": given_label,
        "given_label_name": [class_names[label] for label in given_label],
        "suggested_label": suggested_label,
        "suggested_label_name": [class_names[label] for label in suggested_label],
        "suggested_confidence": rng.uniform(0.4, 1.0, n_samples),
        "label_quality": label_quality,
        "is_label_issue": label_quality < 0.5,
        "p_clean": np.clip(label_quality + rng.normal(0, 0.05, n_samples), 0, 1),
    })
    if with_truth:
        manifest["true_label"] = true_label
        manifest["is_noisy"] = is_noisy
    return manifest


def make_history(n_epochs: int, *, with_metrics: bool) -> pd.DataFrame:
    """Warm-up then MixNN epochs; the evaluation columns are NaN during warm-up."""
    epochs = np.arange(n_epochs)
    history = pd.DataFrame({
        "epoch": epochs,
        "phase": ["warmup" if epoch < 3 else "mixnn" for epoch in epochs],
        "train_loss": 2.0 / (1 + epochs),
        "seconds": np.full(n_epochs, 1.5),
    })
    if with_metrics:
        in_warmup = epochs < 3
        history["test_acc"] = 0.5 + 0.01 * epochs
        history["label_recovery"] = np.where(in_warmup, np.nan, 0.6 + 0.01 * epochs)
        history["given_label_accuracy"] = 0.7
        history["mean_p_clean"] = np.where(in_warmup, np.nan, 0.5 + 0.01 * epochs)
        history["n_label_changes"] = np.where(in_warmup, np.nan, 100.0 / (1 + epochs))
    return history


def make_snapshots(n_samples: int, *, with_truth: bool, rng: np.random.Generator) -> list[dict]:
    """Three fitted-mixture snapshots whose components separate more each time."""
    snapshots = []
    for epoch, noisy_mean in ((3, 0.35), (6, 0.55), (9, 0.7)):
        is_noisy = rng.random(n_samples) < 0.3
        losses = np.clip(np.where(is_noisy, rng.normal(noisy_mean, 0.12, n_samples),
                                  rng.normal(0.1, 0.06, n_samples)), 0, 1)
        snapshot = {"epoch": epoch, "losses": losses, "means": [noisy_mean, 0.1],
                    "variances": [0.12**2, 0.06**2], "weights": [0.3, 0.7]}
        if with_truth:
            snapshot["is_noisy"] = is_noisy
        snapshots.append(snapshot)
    return snapshots


def make_images(n_images: int, channels: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Random uint8 images shaped (M, C, H, W)."""
    return rng.integers(0, 256, (n_images, channels, side, side), dtype=np.uint8)


def write_synthetic_report(report_dir: Path, *, class_names: list[str], with_truth: bool,
                           channels: int, n_images: int = 36, top_k: int = 36,
                           summary: dict = SUMMARY) -> Path:
    """write_report on a fully synthetic run of 300 samples."""
    rng = np.random.default_rng(0)
    return write_report(
        report_dir,
        manifest=make_manifest(300, class_names, with_truth=with_truth, rng=rng),
        class_names=class_names,
        history=make_history(12, with_metrics=with_truth),
        mixture_snapshots=make_snapshots(300, with_truth=with_truth, rng=rng),
        suspect_images=make_images(n_images, channels, 8 if channels == 1 else 32, rng),
        summary=summary,
        top_k=top_k,
        audit_images=make_images(AUDIT_SIZE, channels, 8 if channels == 1 else 32, rng),
    )


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows (cells, unescaped pipes as separators) of the first table after ``heading``."""
    section = markdown.split(heading, 1)[1]
    table_lines = []
    for line in section.splitlines():
        if line.startswith("|"):
            table_lines.append(line)
        elif table_lines:
            break
    return [[cell.strip() for cell in UNESCAPED_PIPE.split(line)[1:-1]] for line in table_lines[2:]]


def assert_tables_well_formed(markdown: str) -> None:
    """Every markdown table row has as many cells as its header, and a separator row follows it."""
    previous_is_table = False
    for line in markdown.splitlines():
        is_table = line.startswith("|")
        if is_table and not previous_is_table:
            n_cells = len(UNESCAPED_PIPE.split(line))
            header = line
        elif is_table:
            assert len(UNESCAPED_PIPE.split(line)) == n_cells, f"{line!r} vs header {header!r}"
        previous_is_table = is_table


def assert_valid_png(path: Path) -> None:
    """A PNG by signature that PIL decodes to a plausibly sized, non-blank image."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert 300 <= width <= 4000 and 100 <= height <= 4000, (path.name, image.size)
    assert pixels.std() > 0, f"{path.name} is blank"


REPORT_CASES = {
    # grey images, truth known, a pipe and a long name; more images than top_k
    "3-classes-truth-grey": dict(class_names=["cat|dog", "airplane", "a rather long class name indeed"],
                                 with_truth=True, channels=1, n_images=36, top_k=10),
    # RGB images, no truth; fewer images than top_k
    "10-classes-no-truth-rgb": dict(class_names=[f"class {index}" for index in range(10)],
                                    with_truth=False, channels=3, n_images=12, top_k=36),
}


@pytest.fixture(scope="module", params=list(REPORT_CASES), ids=list(REPORT_CASES))
def synthetic_report(request, tmp_path_factory) -> tuple[Path, dict]:
    """One written report per case (module scope: each is rendered once), with its case."""
    case = REPORT_CASES[request.param]
    report_dir = tmp_path_factory.mktemp(request.param) / "report"
    return write_synthetic_report(report_dir, **case), case


def test_report_writes_every_plot_as_a_valid_linked_png(synthetic_report):
    report_path, _ = synthetic_report

    assert report_path.name == "report.md"
    markdown = report_path.read_text(encoding="utf-8")
    for file_name in PLOT_FILES:
        assert_valid_png(report_path.parent / file_name)
        assert f"]({file_name})" in markdown


def test_report_markdown_has_summary_and_well_formed_tables(synthetic_report):
    report_path, case = synthetic_report

    markdown = report_path.read_text(encoding="utf-8")
    assert_tables_well_formed(markdown)
    summary_rows = dict(table_rows(markdown, "## Summary"))
    assert summary_rows["Input samples"] == "1,234"
    assert summary_rows["Ingested"] == "1,200"
    assert summary_rows["Quarantined (unreadable or invalid)"] == "34"
    assert summary_rows["Flagged as label issues"] == "87"
    assert summary_rows["Epochs"] == "12"
    assert summary_rows["Method"] == "mixnn"
    per_class_rows = table_rows(markdown, "## Per class")
    escaped_names = [name.replace("|", "\\|") for name in case["class_names"]]
    assert [row[0] for row in per_class_rows] == escaped_names
    assert sum(int(row[1].replace(",", "")) for row in per_class_rows) == 300


def test_report_lists_suspects_lowest_quality_first_with_ties_by_sample_id(synthetic_report):
    report_path, case = synthetic_report

    markdown = report_path.read_text(encoding="utf-8")
    suspect_rows = table_rows(markdown, "## Top ")
    assert len(suspect_rows) == case["top_k"]
    assert [int(row[1]) for row in suspect_rows[:4]] == EXPECTED_WORST_IDS
    qualities = [float(row[6]) for row in suspect_rows]
    assert qualities == sorted(qualities)
    assert ("| true label |" in markdown) == case["with_truth"]


def test_suspects_table_orders_and_truncates():
    manifest = make_manifest(50, ["a", "b"], with_truth=False, rng=np.random.default_rng(1))
    reversed_manifest = manifest.iloc[::-1]  # puts sample 11 before its tie, sample 3

    table = suspects_table(reversed_manifest, top_k=4)

    assert table["sample_id"].tolist() == EXPECTED_WORST_IDS
    assert table.index.tolist() == [0, 1, 2, 3]
    assert "true_label" not in table.columns
    assert len(suspects_table(reversed_manifest, top_k=500)) == 50


def test_audit_sample_draws_changed_labels_at_random_reproducibly():
    manifest = make_manifest(300, ["a", "b", "c"], with_truth=True, rng=np.random.default_rng(4))
    changed = manifest.loc[manifest["suggested_label"] != manifest["given_label"], "sample_id"]
    assert len(changed) > AUDIT_SIZE

    audit = audit_sample(manifest.iloc[::-1])  # row order does not matter

    assert len(audit) == AUDIT_SIZE and audit["sample_id"].is_unique
    assert set(audit["sample_id"]) <= set(changed)
    assert audit["sample_id"].tolist() == sorted(audit["sample_id"])
    assert "true_label" in audit.columns
    assert audit.equals(audit_sample(manifest))
    assert not audit.equals(audit_sample(manifest, seed=1))
    # not the surest changes: the draw spreads over the whole range of label quality
    qualities = manifest.set_index("sample_id").loc[changed, "label_quality"]
    assert audit["label_quality"].max() > qualities.quantile(0.5)
    assert len(audit_sample(manifest, size=10_000)) == len(changed)
    unchanged = manifest.assign(suggested_label=manifest["given_label"])
    assert audit_sample(unchanged).empty


def test_report_shows_the_audit_sample(synthetic_report):
    report_path, case = synthetic_report

    markdown = report_path.read_text(encoding="utf-8")
    rows = table_rows(markdown, "## Audit sample")
    assert len(rows) == AUDIT_SIZE
    assert all(row[3] != row[4] for row in rows)  # given and suggested differ in every row
    assert f"## Audit sample: {AUDIT_SIZE} changed labels drawn at random" in markdown


def test_missing_optional_inputs_do_not_crash(tmp_path):
    minimal_summary = {"n_input": 10, "n_ingested": 10, "n_quarantined": 0, "n_label_issues": 1,
                       "method": "ce", "epochs": 2}
    rng = np.random.default_rng(3)
    manifest = make_manifest(10, ["x", "y"], with_truth=False, rng=rng)
    manifest["p_clean"] = np.nan

    report_path = write_report(
        tmp_path, manifest=manifest, class_names=["x", "y"],
        history=make_history(2, with_metrics=False), mixture_snapshots=[],
        suspect_images=make_images(0, 3, 16, rng), summary=minimal_summary,
    )

    markdown = report_path.read_text(encoding="utf-8")
    for file_name in PLOT_FILES:
        assert_valid_png(tmp_path / file_name)
    assert "Test accuracy" not in markdown
    assert len(table_rows(markdown, "## Top 10 suspected")) == 10


def test_optional_metrics_and_extra_keys_are_rendered():
    summary = {**SUMMARY, "test_acc_last": 0.8608, "auroc": 0.93125,
               "wall_seconds": 125.0, "dataset": "digits", "label_recovery": float("nan")}
    manifest = make_manifest(20, ["a", "b"], with_truth=False, rng=np.random.default_rng(4))

    markdown = render_markdown(manifest=manifest, class_names=["a", "b"], summary=summary,
                               suspects=suspects_table(manifest, 5), audit=audit_sample(manifest))

    summary_rows = dict(table_rows(markdown, "## Summary"))
    assert summary_rows["Test accuracy, last epoch"] == "0.8608"
    assert summary_rows["Label-error detection AUROC (of 1 - label quality)"] == "0.9313"
    assert summary_rows["Wall time"] == "125.0 s (2.1 min)"
    assert summary_rows["dataset"] == "digits"
    assert not any(label.startswith("Label recovery") for label in summary_rows)


@pytest.mark.parametrize("with_metrics, exported, starred",
                         [(True, 0.83, True), (True, None, False), (True, float("nan"), False), (False, 0.83, False)])
def test_the_exported_recovery_is_starred_beside_the_training_time_curve(with_metrics, exported, starred):
    """The manifest's recovery is drawn at the last epoch, in the panel of the training-time
    recovery, only when both exist."""
    figure = plot_training_curves(make_history(10, with_metrics=with_metrics), exported)
    stars = [line for ax in figure.axes for line in ax.get_lines()
             if line.get_label() == EXPORTED_RECOVERY_LABEL]
    assert len(stars) == int(starred)
    if starred:
        assert list(stars[0].get_xdata()) == [9] and list(stars[0].get_ydata()) == [0.83]
        labels = [text.get_text() for text in stars[0].axes.get_legend().get_texts()]
        assert EXPORTED_RECOVERY_LABEL in labels
        assert "label recovery during training (suggested = true)" in labels


@pytest.mark.parametrize("strength, warned", [(0.004, True), (0.0999, True), (0.1, False), (0.9, False),
                                              (None, False)])
def test_a_weak_noise_strength_is_explained_below_the_summary(strength, warned):
    summary = {**SUMMARY} if strength is None else {**SUMMARY, "noise_strength": strength}
    manifest = make_manifest(20, ["a", "b"], with_truth=False, rng=np.random.default_rng(5))

    markdown = render_markdown(manifest=manifest, class_names=["a", "b"], summary=summary,
                               suspects=suspects_table(manifest, 5), audit=audit_sample(manifest))

    between_summary_and_plots = markdown.split("## Summary", 1)[1].split("## Plots", 1)[0]
    assert ("read few noisy labels" in between_summary_and_plots) == warned
    if warned:
        assert f"(noise strength {strength:.3f})" in between_summary_and_plots
    summary_rows = dict(table_rows(markdown, "## Summary"))
    label = "Noise strength (odds of a noisy label by the first mixture fit, at most 1)"
    assert summary_rows.get(label) == (None if strength is None else f"{strength:.4f}")


@pytest.mark.parametrize("estimate, concentration, flips_named", [
    ("mixture_symmetric", 0.71, True), ("mixture_symmetric", 0.5, True), ("mixture_symmetric", 0.49, False),
    ("mixture", 0.71, False), ("mixture_symmetric", None, False)])
def test_a_strength_zeroed_under_flips_is_explained_as_such(estimate, concentration, flips_named):
    """noise_estimate="mixture_symmetric" sets the strength to 0 where the first fit reads flips: the
    report says so, not that the mixture read few noisy labels; the summary names the estimate."""
    summary = {**SUMMARY, "noise_strength": 0.0, "noise_estimate": estimate}
    if concentration is not None:
        summary["noise_concentration"] = concentration
    manifest = make_manifest(20, ["a", "b"], with_truth=False, rng=np.random.default_rng(5))

    markdown = render_markdown(manifest=manifest, class_names=["a", "b"], summary=summary,
                               suspects=suspects_table(manifest, 5), audit=audit_sample(manifest))

    between_summary_and_plots = markdown.split("## Summary", 1)[1].split("## Plots", 1)[0]
    assert strength_zeroed_under_flips(summary) == flips_named
    assert ("read the noise as flips" in between_summary_and_plots) == flips_named
    assert ("read few noisy labels" in between_summary_and_plots) != flips_named
    if flips_named:
        assert f"(noise concentration {concentration:.3f})" in between_summary_and_plots
    summary_rows = dict(table_rows(markdown, "## Summary"))
    assert summary_rows["Noise estimate (what the noise strength was read from)"] == estimate


def test_report_module_imports_neither_prefect_nor_pyplot():
    code = ("import sys, mixnn_core.report; "
            "assert 'prefect' not in sys.modules and 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("scale", ["linear", "log", None])
def test_mixture_snapshots_show_the_losses_on_the_runs_mixture_scale(tmp_path, scale):
    """The report plots the mixture's input: the run's losses on its ``mixture_scale`` (linear
    when a run's configuration predates the field)."""
    run = RunFiles(tmp_path)
    write_json_atomic({"train": {} if scale is None else {"mixture_scale": scale}}, run.config)
    losses = np.array([0.1, 0.5, 2.0, 15.0])
    run.features(4).parent.mkdir(parents=True)
    pq.write_table(pa.table({"sample_id": np.arange(4), "loss": losses}), run.features(4))  # as a run writes it
    run.mixture(4).parent.mkdir(parents=True)
    write_json_atomic({"epoch": 4, "means": [0.1, 0.8]}, run.mixture(4))
    (snapshot,) = mixture_snapshots(run, None)
    assert np.allclose(snapshot["losses"], mixture_input(losses, scale or "linear"))
    assert snapshot["means"] == [0.1, 0.8]
