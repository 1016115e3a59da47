"""Human-readable report of a MixNN run: ``report.md`` plus the PNG plots it embeds.

Only the object-oriented matplotlib API is used (``Figure`` + ``FigureCanvasAgg``), so writing a
report touches no pyplot global state and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mixnn_core.confident_learning import SYMMETRIC_NOISE_CONCENTRATION, noise_kind
from mixnn_core.files import replace_atomically, write_text_atomic

REPORT_FILE = "report.md"
LOSS_MIXTURE_PNG = "loss_mixture.png"
CLEAN_PROBABILITY_PNG = "clean_probability.png"
CONFUSION_PNG = "confusion_given_vs_suggested.png"
TRAINING_CURVES_PNG = "training_curves.png"
SUSPECTS_PNG = "suspects.png"
AUDIT_PNG = "audit_sample.png"
PLOT_FILES = (LOSS_MIXTURE_PNG, CLEAN_PROBABILITY_PNG, CONFUSION_PNG, TRAINING_CURVES_PNG, SUSPECTS_PNG,
              AUDIT_PNG)
# Changed labels drawn at random for a person to check. 30 checks tell suggestions that are 90 %
# right (27 expected) from 60 % right ones (18 expected) well outside either's binomial spread.
AUDIT_SIZE = 30
AUDIT_SEED = 0

REQUIRED_MANIFEST_COLUMNS = (
    "sample_id", "source_ref", "given_label", "given_label_name", "suggested_label",
    "suggested_label_name", "suggested_confidence", "label_quality", "is_label_issue", "p_clean",
)
SUSPECT_COLUMNS = REQUIRED_MANIFEST_COLUMNS + ("true_label", "is_noisy")

DPI = 110
CLEAN_COLOR = "tab:blue"
NOISY_COLOR = "tab:orange"
UNSPLIT_COLOR = "tab:gray"
CLEAN_COMPONENT_COLOR = "navy"
NOISY_COMPONENT_COLOR = "darkred"
PHASE_COLORS = {"warmup": "#fde9c9", "mixup": "#e3d7f2", "mixnn": "#d6ecd2", "consolidate": "#f5dada",
                "ce": "#dde6f2"}
OTHER_PHASE_COLOR = "#e6e6e6"
MAX_PLOT_NAME_CHARS = 14
MAX_ANNOTATED_CLASSES = 20
MAX_LABELLED_TICKS = 40
SUSPECT_GRID_COLUMNS = 6

# (panel title, history columns drawn in it); a panel is drawn when one of its columns has data.
CURVE_PANELS = (
    ("train loss", ("train_loss",)),
    ("accuracy", ("test_acc", "label_recovery", "given_label_accuracy")),
    ("mean clean probability", ("mean_p_clean",)),
    ("label changes", ("n_label_changes",)),
)
CURVE_LABELS = {
    "train_loss": "train loss",
    "test_acc": "test accuracy",
    "label_recovery": "label recovery during training (suggested = true)",
    "given_label_accuracy": "given-label accuracy",
    "mean_p_clean": "mean p_clean",
    "n_label_changes": "suggested labels changed this epoch",
}

EXPORTED_RECOVERY_LABEL = "label recovery of the exported manifest"

# Summary rows always shown (value "n/a" when absent), then optional metrics when present.
# Any other scalar summary entry is shown under its own key after these.
SUMMARY_COUNT_LABELS = {
    "n_input": "Input samples",
    "n_ingested": "Ingested",
    "n_quarantined": "Quarantined (unreadable or invalid)",
    "n_label_issues": "Flagged as label issues",
}
SUMMARY_RUN_LABELS = {"method": "Method", "epochs": "Epochs"}
SUMMARY_METRIC_LABELS = {
    "test_acc_last": "Test accuracy, last epoch",
    "test_acc_best": "Test accuracy, best epoch (reported, never used for selection)",
    "label_recovery": "Label recovery (suggested label = true label)",
    "given_label_accuracy": "Given-label accuracy (given label = true label)",
    "n_fixed": "Labels fixed (given wrong, suggested right)",
    "n_broken": "Labels broken (given right, suggested wrong)",
    "precision": "Label-error detection precision",
    "recall": "Label-error detection recall",
    "f1": "Label-error detection F1",
    "auroc": "Label-error detection AUROC (of 1 - label quality)",
    "noise_strength": "Noise strength (odds of a noisy label by the first mixture fit, at most 1)",
    "noise_estimate": "Noise estimate (what the noise strength was read from)",
    "noise_concentration": f"Noise concentration (first fit; below {SYMMETRIC_NOISE_CONCENTRATION}: labels "
                           "contradicted evenly over the other classes, symmetric noise; above: flips between classes)",
    "wall_seconds": "Wall time",
}
# below this noise strength the default mixing and training correction are nearly off
WEAK_NOISE_STRENGTH = 0.1

# file name -> (section title, one-sentence caption saying what to look for)
PLOTS = {
    LOSS_MIXTURE_PNG: (
        "Loss mixture",
        "Per-sample training losses (min-max normalised) with the two fitted Gaussian components: "
        "look for two well separated humps, with the clean (low-loss) component holding the truly "
        "clean samples; heavy overlap means the clean probabilities of that epoch are unreliable."
    ),
    CLEAN_PROBABILITY_PNG: (
        "Clean probability and label quality",
        "Distribution of the mixture's clean probability and of the final label quality: a useful "
        "run pushes most samples towards 0 or 1, and when the truth is known the truly noisy "
        "samples should pile up near 0."
    ),
    CONFUSION_PNG: (
        "Given vs suggested label",
        "Given label (rows) against suggested label (columns), coloured by the fraction of each "
        "row: off-diagonal cells are suggested changes, and a large cell for one pair of classes "
        "points to a systematic confusion rather than random noise."
    ),
    TRAINING_CURVES_PNG: (
        "Training curves",
        "Training history with the phases shaded: the loss should fall, label changes should "
        "settle towards zero, and test accuracy that drops late in training means the model is "
        "memorising wrong labels. The star is the label recovery of the exported manifest: a "
        "mixnn run's exported suggestion also weighs the given label, so it can sit above the "
        "last epoch's training-time suggestion."
    ),
    SUSPECTS_PNG: (
        "Suspected label errors",
        "The samples whose given label is least likely to be correct, worst first: when the image "
        "looks like the suggested class, the given label is probably wrong."
    ),
    AUDIT_PNG: (
        "Random sample of changed labels",
        "Labels the run changed, drawn at random (the audit table below): unlike the suspects, "
        "the run's surest changes, they show how good the changes are on the whole."
    ),
}


def write_report(
    report_dir: str | Path,
    *,
    manifest: pd.DataFrame,
    class_names: list[str],
    history: pd.DataFrame,
    mixture_snapshots: list[dict],
    suspect_images: np.ndarray,
    summary: dict,
    top_k: int = 36,
    audit_images: np.ndarray | None = None,
) -> Path:
    """Write ``report.md`` and its six PNG plots into ``report_dir``; return the markdown path.

    Each file is written aside and renamed into place, the markdown last.

    ``suspect_images`` holds the images of the lowest-label-quality samples in the order of
    :func:`suspects_table`; the grid shows the first ``min(top_k, len(suspect_images))`` of them.
    ``audit_images`` holds those of :func:`audit_sample` (``AUDIT_SIZE``), in its order.
    """
    _require_columns(manifest, REQUIRED_MANIFEST_COLUMNS)
    report_dir = Path(report_dir)
    suspects = suspects_table(manifest, top_k)
    audit = audit_sample(manifest)
    figures = {
        LOSS_MIXTURE_PNG: plot_loss_mixture(mixture_snapshots),
        CLEAN_PROBABILITY_PNG: plot_clean_probability(manifest),
        CONFUSION_PNG: plot_confusion(manifest, class_names),
        TRAINING_CURVES_PNG: plot_training_curves(history, summary.get("label_recovery")),
        SUSPECTS_PNG: plot_samples(suspects, suspect_images, "No suspect images were provided."),
        AUDIT_PNG: plot_samples(audit, np.empty((0,)) if audit_images is None else audit_images,
                                "No label was changed." if audit.empty else "No audit images were provided."),
    }
    for file_name, figure in figures.items():
        replace_atomically(report_dir / file_name,
                           lambda tmp, figure=figure: figure.savefig(tmp, dpi=DPI, format="png"))
    markdown = render_markdown(
        manifest=manifest, class_names=class_names, summary=summary,
        suspects=suspects, audit=audit,
    )
    return write_text_atomic(markdown, report_dir / REPORT_FILE)


def _require_columns(manifest: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise a ValueError naming every required manifest column that is absent."""
    missing = [column for column in columns if column not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks required columns: {', '.join(missing)}")


def suspects_table(manifest: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The ``top_k`` samples with the lowest label quality, worst first, ties broken by sample_id."""
    present_columns = [column for column in SUSPECT_COLUMNS if column in manifest.columns]
    ranked = manifest.sort_values(["label_quality", "sample_id"], kind="stable", na_position="last")
    return ranked.head(top_k)[present_columns].reset_index(drop=True)


def audit_sample(manifest: pd.DataFrame, size: int = AUDIT_SIZE, seed: int = AUDIT_SEED) -> pd.DataFrame:
    """Up to ``size`` of the changed labels (suggested != given), drawn uniformly at random with
    ``seed``, in sample_id order: a person who checks them estimates how often the run's changes
    are right, which no figure of the run itself can tell."""
    present_columns = [column for column in SUSPECT_COLUMNS if column in manifest.columns]
    changed = manifest[manifest["suggested_label"] != manifest["given_label"]].sort_values("sample_id", kind="stable")
    chosen = np.random.default_rng(seed).choice(len(changed), size=min(size, len(changed)), replace=False)
    return changed.iloc[np.sort(chosen)][present_columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------- plots


def plot_loss_mixture(mixture_snapshots: list[dict]) -> Figure:
    """Small multiples, one per snapshot epoch: histogram of the normalised per-sample losses
    (stacked truly clean / truly noisy when known) with the two weighted Gaussian components and
    their sum overlaid; the lower-mean component is the clean one."""
    if not mixture_snapshots:
        return _message_figure("No loss-mixture snapshots were recorded for this run.")
    n_columns = min(3, len(mixture_snapshots))
    n_rows = math.ceil(len(mixture_snapshots) / n_columns)
    figure = _new_figure(4.2 * n_columns, 3.2 * n_rows + 0.6)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for ax, snapshot in zip(axes, mixture_snapshots):
        _draw_mixture_snapshot(ax, snapshot)
    for unused_ax in axes[len(mixture_snapshots):]:
        unused_ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", fontsize=8,
                  ncols=min(len(labels), 2 * n_columns))
    return figure


def _draw_mixture_snapshot(ax, snapshot: dict) -> None:
    """One snapshot: loss histogram (density) plus each weighted component and the mixture."""
    losses = np.asarray(snapshot["losses"], dtype=float)
    _draw_split_histogram(ax, losses, _noise_flags(snapshot.get("is_noisy")),
                          bins=np.linspace(0.0, 1.0, 41), density=True)
    grid = np.linspace(0.0, 1.0, 400)
    means = np.asarray(snapshot["means"], dtype=float)
    clean_index = int(np.argmin(means))
    component_densities = [
        weight * _gaussian_density(grid, mean, variance)
        for mean, variance, weight in zip(means, snapshot["variances"], snapshot["weights"])
    ]
    ax.plot(grid, np.sum(component_densities, axis=0), color="black", linestyle="--",
            linewidth=1.0, label="mixture")
    ax.plot(grid, component_densities[clean_index], color=CLEAN_COMPONENT_COLOR, linewidth=1.6,
            label="clean component (lower mean)")
    ax.plot(grid, component_densities[1 - clean_index], color=NOISY_COMPONENT_COLOR,
            linewidth=1.6, label="noisy component")
    ax.set_title(f"epoch {snapshot['epoch']}: clean mean {means[clean_index]:.2f}, "
                 f"noisy mean {means[1 - clean_index]:.2f}", fontsize=9)
    ax.set_xlabel("normalised loss", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)


def _gaussian_density(x: np.ndarray, mean: float, variance: float) -> np.ndarray:
    """Normal density with the given mean and variance (variance floored to stay finite)."""
    variance = max(float(variance), 1e-9)
    return np.exp(-0.5 * (x - mean) ** 2 / variance) / math.sqrt(2.0 * math.pi * variance)


def plot_clean_probability(manifest: pd.DataFrame) -> Figure:
    """Two histograms side by side: the mixture's last-epoch clean probability ``p_clean`` and the
    final ``label_quality``, each stacked truly clean / truly noisy when the truth is known."""
    figure = _new_figure(10.0, 3.8)
    axes = figure.subplots(1, 2)
    is_noisy = _noise_flags(manifest.get("is_noisy"))
    panels = (("p_clean", "clean probability p_clean (last epoch)"),
              ("label_quality", "label quality (P(given label is correct))"))
    for ax, (column, title) in zip(axes, panels):
        values = manifest[column].to_numpy(dtype=float)
        _draw_split_histogram(ax, values, is_noisy, bins=np.linspace(0.0, 1.0, 21), density=False)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(column, fontsize=9)
        ax.set_ylabel("samples", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return figure


def _draw_split_histogram(ax, values: np.ndarray, is_noisy: np.ndarray | None, *,
                          bins: np.ndarray, density: bool) -> None:
    """Histogram of the finite ``values``; stacked truly clean / truly noisy when ``is_noisy`` is
    known, a single grey histogram otherwise."""
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    if is_noisy is None:
        ax.hist(values[finite], bins=bins, density=density, color=UNSPLIT_COLOR, alpha=0.7,
                label="all samples")
        return
    noisy = is_noisy[finite]
    ax.hist([values[finite][~noisy], values[finite][noisy]], bins=bins, density=density,
            stacked=True, color=[CLEAN_COLOR, NOISY_COLOR], alpha=0.6,
            label=["truly clean", "truly noisy"])


def plot_confusion(manifest: pd.DataFrame, class_names: Sequence[str]) -> Figure:
    """C x C matrix of given label (rows) against suggested label (columns), coloured by the
    fraction of the row and annotated with counts when there are at most 20 classes."""
    counts = _given_vs_suggested_counts(manifest, len(class_names))
    row_totals = counts.sum(axis=1, keepdims=True)
    row_fractions = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    side = float(np.clip(0.45 * len(class_names) + 3.0, 5.0, 16.0))
    figure = _new_figure(side + 1.2, side)
    ax = figure.subplots()
    image = ax.imshow(row_fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, shrink=0.8, label="fraction of the given-label row")
    if len(class_names) <= MAX_ANNOTATED_CLASSES:
        _annotate_counts(ax, counts, row_fractions)
    _set_class_ticks(ax, class_names)
    ax.set_xlabel("suggested label")
    ax.set_ylabel("given label")
    ax.set_title("given vs suggested label (counts)")
    return figure


def _given_vs_suggested_counts(manifest: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Integer matrix: entry (g, s) counts samples given label g and suggested label s."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (manifest["given_label"].to_numpy(dtype=np.int64),
                       manifest["suggested_label"].to_numpy(dtype=np.int64)), 1)
    return counts


def _annotate_counts(ax, counts: np.ndarray, row_fractions: np.ndarray) -> None:
    """Write each count in its cell, white on dark cells, black on light ones."""
    font_size = 9 if len(counts) <= 10 else 7
    for (row, column), count in np.ndenumerate(counts):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=font_size,
                color="white" if row_fractions[row, column] > 0.5 else "black")


def _set_class_ticks(ax, class_names: Sequence[str]) -> None:
    """Truncated class names on both axes, thinned to at most MAX_LABELLED_TICKS per axis; with
    many classes each name is prefixed by its index so truncated names stay distinguishable."""
    stride = math.ceil(len(class_names) / MAX_LABELLED_TICKS)
    positions = np.arange(0, len(class_names), stride)
    many_classes = len(class_names) > MAX_ANNOTATED_CLASSES
    labels = [f"{position}: {_short_name(class_names[position])}" if many_classes
              else _short_name(class_names[position]) for position in positions]
    font_size = 7 if many_classes else 9
    ax.set_xticks(positions, labels, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=font_size)
    ax.set_yticks(positions, labels, fontsize=font_size)


def plot_training_curves(history: pd.DataFrame, exported_recovery: float | None = None) -> Figure:
    """Stacked panels sharing the epoch axis: train loss, then whichever of accuracy / label
    recovery, mean clean probability and label changes were recorded; phases shaded and their
    boundaries marked with dashed lines. ``exported_recovery`` (the manifest's label recovery)
    is drawn as a star at the last epoch beside the training-time recovery curve."""
    panels = [(title, columns) for title, columns in CURVE_PANELS if _has_data(history, columns)]
    if not panels:
        return _message_figure("No training history was recorded for this run.")
    figure = _new_figure(9.0, 2.3 * len(panels) + 0.8)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False).ravel()
    phase_spans = _phase_spans(history)
    for ax, (title, columns) in zip(axes, panels):
        _shade_phases(ax, phase_spans)
        recorded_columns = [column for column in columns if _has_data(history, (column,))]
        for column in recorded_columns:
            series = history[["epoch", column]].dropna()
            ax.plot(series["epoch"], series[column], marker="o", markersize=3,
                    label=CURVE_LABELS[column])
        entries = len(recorded_columns)
        if "label_recovery" in recorded_columns and not _is_missing(exported_recovery):
            ax.plot([history["epoch"].max()], [exported_recovery], marker="*", markersize=11,
                    linestyle="none", color="black", label=EXPORTED_RECOVERY_LABEL)
            entries += 1
        ax.set_ylabel(title, fontsize=9)
        ax.tick_params(labelsize=8)
        if entries > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("epoch")
    phase_handles = [Patch(color=PHASE_COLORS.get(phase, OTHER_PHASE_COLOR), label=phase)
                     for phase in dict.fromkeys(phase for phase, _, _ in phase_spans)]
    figure.legend(handles=phase_handles, loc="outside upper center", ncols=len(phase_handles),
                  fontsize=8, title="phase", title_fontsize=8)
    return figure


def _has_data(history: pd.DataFrame, columns: Sequence[str]) -> bool:
    """Whether any of ``columns`` exists in ``history`` with at least one non-missing value."""
    return any(column in history.columns and history[column].notna().any() for column in columns)


def _phase_spans(history: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Contiguous runs of one phase as (phase, first epoch, last epoch), in epoch order."""
    ordered = history.sort_values("epoch", kind="stable")
    run_ids = (ordered["phase"] != ordered["phase"].shift()).cumsum()
    return [(str(run["phase"].iloc[0]), float(run["epoch"].iloc[0]), float(run["epoch"].iloc[-1]))
            for _, run in ordered.groupby(run_ids, sort=False)]


def _shade_phases(ax, phase_spans: list[tuple[str, float, float]]) -> None:
    """Shade each phase's epochs and draw a dashed line where one phase gives way to the next."""
    for index, (phase, first_epoch, last_epoch) in enumerate(phase_spans):
        ax.axvspan(first_epoch - 0.5, last_epoch + 0.5, linewidth=0,
                   color=PHASE_COLORS.get(phase, OTHER_PHASE_COLOR))
        if index > 0:
            ax.axvline(first_epoch - 0.5, color="dimgray", linestyle="--", linewidth=0.8)


def plot_samples(samples: pd.DataFrame, images: np.ndarray, empty_message: str) -> Figure:
    """Thumbnail grid of ``samples`` (suspects or the audit sample) in their order, each
    captioned with its sample_id, "given -> suggested" and its label quality; grey images use
    a grey colormap. ``empty_message`` says why when there is nothing to show."""
    samples = samples.head(len(images))
    if samples.empty:
        return _message_figure(empty_message)
    n_columns = min(SUSPECT_GRID_COLUMNS, len(samples))
    n_rows = math.ceil(len(samples) / n_columns)
    figure = _new_figure(2.1 * n_columns, 2.25 * n_rows)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for ax, suspect, image in zip(axes, samples.itertuples(index=False), images):
        _draw_thumbnail(ax, image)
        ax.set_title(f"id {suspect.sample_id}\n{_short_name(suspect.given_label_name)} -> "
                     f"{_short_name(suspect.suggested_label_name)}\n"
                     f"(quality {suspect.label_quality:.2f})", fontsize=7.5)
    for ax in axes:
        ax.set_axis_off()
    return figure


def _draw_thumbnail(ax, image: np.ndarray) -> None:
    """Show one (C, H, W) uint8 image; one channel in grey, three channels as RGB."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(np.transpose(image, (1, 2, 0)), interpolation="nearest")


def _new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout, drawn by the Agg canvas (no pyplot state)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _message_figure(message: str) -> Figure:
    """A small figure that only says why a plot is empty, so every linked PNG exists."""
    figure = _new_figure(6.0, 1.5)
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    return figure


def _noise_flags(is_noisy) -> np.ndarray | None:
    """The true noisy/clean flags as a bool array, or None when they are not known."""
    return None if is_noisy is None else np.asarray(is_noisy, dtype=bool)


def _short_name(name: object, max_chars: int = MAX_PLOT_NAME_CHARS) -> str:
    """Class name cut to ``max_chars`` characters (ending in an ellipsis) for plot labels."""
    text = str(name)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


# ------------------------------------------------------------------------------------ markdown

AUDIT_ADVICE = (
    "Before applying the suggested labels wholesale, look at these (the same order as "
    "`audit_sample.png`) and count how often the suggested label is right and how often the "
    "given one was. A change helps only where the suggestion is right; it does harm where the "
    "given label was right. Apply the suggestions only if they are right clearly more often than "
    "the given labels were; otherwise use `is_label_issue` as a review list. (A weak model can "
    "suggest worse labels than careful annotators gave: BENCHMARKS.md, CIFAR-10N `aggre_label`.)"
)


def render_markdown(*, manifest: pd.DataFrame, class_names: Sequence[str], summary: dict,
                    suspects: pd.DataFrame, audit: pd.DataFrame) -> str:
    """The text of ``report.md``: summary, the plots with captions, suspects, the audit sample
    and per-class tables."""
    method = summary.get("method", "unknown")
    sections = [
        "# MixNN label-quality report",
        (f"This report was written by mixnn after a run with method `{method}`. Each sample "
         "received a *label quality*, the estimated probability that its given label is correct, "
         "and a *suggested label*, the model's corrected label. Samples with low label quality "
         "are suspected label errors: review them (the images and table below) before accepting "
         "any suggested change."),
        "## Summary",
        _summary_table(summary, manifest),
        *_noise_strength_notes(summary),
        "## Plots",
        *[_plot_section(file_name) for file_name in PLOT_FILES],
        f"## Top {len(suspects)} suspected label errors",
        "Lowest label quality first (ties by sample_id), in the same order as `suspects.png`.",
        _suspects_markdown_table(suspects, class_names),
        f"## Audit sample: {len(audit)} changed labels drawn at random",
        AUDIT_ADVICE,
        _suspects_markdown_table(audit, class_names),
        "## Per class",
        "Label issues by given class.",
        _per_class_table(manifest, class_names),
    ]
    return "\n\n".join(sections) + "\n"


def strength_zeroed_under_flips(summary: dict) -> bool:
    """Whether the run's noise strength is 0 by ``noise_estimate="mixture_symmetric"`` because its
    first fit read the noise as flips between classes, not because the mixture read few noisy labels."""
    concentration = summary.get("noise_concentration")
    return (summary.get("noise_estimate") == "mixture_symmetric" and not _is_missing(concentration)
            and noise_kind(concentration) == "flips")


def _noise_strength_notes(summary: dict) -> list[str]:
    """A paragraph saying what a weak noise strength did to the run, and why it is weak; none otherwise."""
    strength = summary.get("noise_strength")
    if _is_missing(strength) or strength >= WEAK_NOISE_STRENGTH:
        return []
    suggestions = ("The suggested labels are read as in any run, from the full-speed correction of the "
                   "labels toward the model's predictions.")
    if strength_zeroed_under_flips(summary):
        return [f"The first fit's predictions read the noise as flips into particular other classes "
                f"(noise concentration {summary['noise_concentration']:.3f}), so by "
                "`noise_estimate=mixture_symmetric` the noise strength is 0: what follows it (with the "
                "default options, the mixing and the correction of the training labels) was off, and up to "
                "the final epochs on the samples the mixture kept the model trained as plain training would. "
                f"{suggestions} Under flips that scored better on held-out noisy labels than following the "
                "mixture's reading (BENCHMARKS.md, fifty-third and fifty-fourth passes): judge the "
                "suggestions by the audit sample below."]
    return [f"The first mixture fit read few noisy labels (noise strength {strength:.3f}), so what "
            "follows it (with the default options, the mixing and the correction of the training "
            "labels) ran at that fraction of its full strength: up to the final epochs on the samples "
            f"the mixture kept, the model trained nearly as plain training would. {suggestions} The "
            "mixture can under-read noise that follows the classes (BENCHMARKS.md: CIFAR-10N "
            "`worse_label`, 40 % wrong, read at 0.4 %): judge the suggestions by the audit sample below."]


def _plot_section(file_name: str) -> str:
    """A titled image link to one plot with its caption."""
    title, caption = PLOTS[file_name]
    return f"### {title}\n\n![{title}]({file_name})\n\n*{caption}*"


def _summary_table(summary: dict, manifest: pd.DataFrame) -> str:
    """Counts (always shown), the suggested-change count, then every other scalar summary entry."""
    n_suggested_changes = int((manifest["suggested_label"] != manifest["given_label"]).sum())
    rows = [[label, _format_value(summary.get(key))] for key, label in SUMMARY_COUNT_LABELS.items()]
    rows.append(["Suggested label changes", _format_value(n_suggested_changes)])
    rows += [[label, _format_value(summary.get(key))] for key, label in SUMMARY_RUN_LABELS.items()]
    rows += [[label, _format_metric(key, summary[key])]
             for key, label in SUMMARY_METRIC_LABELS.items() if not _is_missing(summary.get(key))]
    known_keys = SUMMARY_COUNT_LABELS.keys() | SUMMARY_RUN_LABELS.keys() | SUMMARY_METRIC_LABELS.keys()
    rows += [[_escape_cell(key), _format_value(value)] for key, value in summary.items()
             if key not in known_keys and isinstance(value, (str, Real))]
    return _markdown_table(["Quantity", "Value"], rows, right_aligned=[False, True])


def _suspects_markdown_table(suspects: pd.DataFrame, class_names: Sequence[str]) -> str:
    """One row per suspect; a true-label column is added when the truth is known."""
    header = ["#", "sample_id", "source_ref", "given", "suggested", "confidence", "label_quality"]
    has_truth = "true_label" in suspects.columns
    if has_truth:
        header.append("true label")
    rows = []
    for rank, suspect in enumerate(suspects.itertuples(index=False), start=1):
        row = [str(rank), _escape_cell(suspect.sample_id), _escape_cell(suspect.source_ref),
               _escape_cell(suspect.given_label_name), _escape_cell(suspect.suggested_label_name),
               f"{suspect.suggested_confidence:.2f}", f"{suspect.label_quality:.3f}"]
        if has_truth:
            row.append(_escape_cell(class_names[int(suspect.true_label)]))
        rows.append(row)
    right_aligned = [True, False, False, False, False, True, True] + [False] * has_truth
    return _markdown_table(header, rows, right_aligned=right_aligned)


def _per_class_table(manifest: pd.DataFrame, class_names: Sequence[str]) -> str:
    """Per given class: how many samples, how many flagged as label issues, and the fraction."""
    class_indices = range(len(class_names))
    n_given = manifest["given_label"].value_counts().reindex(class_indices, fill_value=0)
    flagged = manifest.loc[manifest["is_label_issue"].astype(bool), "given_label"]
    n_flagged = flagged.value_counts().reindex(class_indices, fill_value=0)
    rows = [[_escape_cell(class_names[index]), _format_value(int(n_given[index])),
             _format_value(int(n_flagged[index])),
             f"{n_flagged[index] / n_given[index]:.1%}" if n_given[index] else "n/a"]
            for index in class_indices]
    return _markdown_table(["class", "n given", "n flagged", "fraction flagged"], rows,
                           right_aligned=[False, True, True, True])


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
                    right_aligned: Sequence[bool]) -> str:
    """A GitHub-flavoured markdown table; cells must already be escaped."""
    separator = ["---:" if right else "---" for right in right_aligned]
    lines = [header, separator, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _escape_cell(value: object) -> str:
    """Text safe inside a markdown table cell: backslashes and pipes escaped, newlines removed."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _format_metric(key: str, value: object) -> str:
    """A summary metric for display; wall time also in minutes."""
    if key == "wall_seconds":
        return f"{value:,.1f} s ({value / 60:.1f} min)"
    return _format_value(value)


def _format_value(value: object) -> str:
    """A scalar for display: n/a when missing, thousands separators for integers, 4 decimals."""
    if _is_missing(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{value:,}"
    if isinstance(value, Real):
        return f"{value:.4f}"
    return _escape_cell(value)


def _is_missing(value: object) -> bool:
    """Whether a summary value is absent: None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))
