"""What a finished run hands back: the corrected-label manifest and a self-contained model.

Manifest schema (version ``MANIFEST_SCHEMA_VERSION``; one row per ingested sample, documented in
the README): sample_id, key, source_ref, given_label, given_label_name, suggested_label,
suggested_label_name, suggested_confidence, label_quality, is_label_issue, p_clean, soft_label
(Parquet only: fixed-size list of float32, one per class), and true_label / is_noisy when noise
was injected for evaluation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from mixnn_core.files import replace_atomically, vector_column, write_json_atomic, write_parquet_atomic
from mixnn_core.outputs import LABEL_ISSUE_RULE, LABEL_QUALITY_RULE, SUGGESTION_RULE, SampleOutputs

# 2 (thirty-fifth pass): mixnn's is_label_issue follows MIXNN_LABEL_ISSUE_RULE (README)
# 3 (thirty-sixth pass): mixnn's label_quality follows MIXNN_LABEL_QUALITY
# 4 (thirty-eighth pass): mixnn's suggested_label follows MIXNN_SUGGESTION_RULE; the rule is in the metadata
# 5 (thirty-ninth pass): mixnn's is_label_issue follows the new MIXNN_LABEL_ISSUE_RULE (the posterior's
#   expected-F1 flags)
MANIFEST_SCHEMA_VERSION = "5"
# 2 (thirty-eighth pass): given_label_evidence (the temperature of the suggestion rule)
# 3 (thirty-ninth pass): given_label_evidence.flag_cut (the probability of being wrong flags start at)
MODEL_CARD_VERSION = "3"


def build_manifest(dataset: pd.DataFrame, class_names: list[str], outputs: SampleOutputs,
                   true_labels: np.ndarray | None = None) -> pd.DataFrame:
    """The manifest rows (without ``soft_label``) in ``sample_id`` order.

    ``dataset`` is the ingested dataset table (sample_id, key, source_ref, ...) whose rows are
    aligned with ``outputs``; ``given_label`` comes from ``outputs`` (the labels training saw).
    """
    if len(dataset) != outputs.given_label.shape[0]:
        raise ValueError(f"dataset has {len(dataset)} rows but outputs cover "
                         f"{outputs.given_label.shape[0]} samples")
    names = np.asarray(class_names, dtype=object)
    manifest = pd.DataFrame({
        "sample_id": dataset["sample_id"].to_numpy(np.int64),
        "key": dataset["key"].astype(str).to_numpy(),
        "source_ref": dataset["source_ref"].astype(str).to_numpy(),
        "given_label": outputs.given_label,
        "given_label_name": names[outputs.given_label].astype(str),
        "suggested_label": outputs.suggested_label,
        "suggested_label_name": names[outputs.suggested_label].astype(str),
        "suggested_confidence": outputs.suggested_confidence,
        "label_quality": outputs.label_quality,
        "is_label_issue": outputs.is_label_issue.astype(bool),
        "p_clean": outputs.p_clean,
    })
    if true_labels is not None:
        true_labels = np.asarray(true_labels, dtype=np.int64)
        manifest["true_label"] = true_labels
        manifest["is_noisy"] = true_labels != outputs.given_label
    return manifest


def write_manifest(manifest: pd.DataFrame, soft_labels: np.ndarray, out_dir: str | Path,
                   label_issue_rule: str = LABEL_ISSUE_RULE,
                   label_quality_rule: str = LABEL_QUALITY_RULE,
                   suggestion_rule: str = SUGGESTION_RULE) -> tuple[Path, Path]:
    """``manifest.parquet`` (with ``soft_label``, the schema version, and in words what
    ``is_label_issue``, ``label_quality`` and ``suggested_label`` say:
    ``SampleOutputs.label_issue_rule`` / ``label_quality_rule`` / ``suggestion_rule``) and
    ``manifest.csv``.

    The CSV follows RFC 4180: CRLF line ends, so that a field holding a bare CR or LF (a class
    name, a file name) is quoted and reads back as one field.
    """
    out_dir = Path(out_dir)
    table = pa.Table.from_pandas(manifest, preserve_index=False)
    table = table.append_column("soft_label", vector_column(soft_labels))
    table = table.replace_schema_metadata({
        **(table.schema.metadata or {}),
        b"mixnn_manifest_version": MANIFEST_SCHEMA_VERSION.encode(),
        b"mixnn_label_issue_rule": label_issue_rule.encode(),
        b"mixnn_label_quality": label_quality_rule.encode(),
        b"mixnn_suggestion_rule": suggestion_rule.encode(),
    })
    parquet_path = write_parquet_atomic(table, out_dir / "manifest.parquet")
    csv_path = replace_atomically(out_dir / "manifest.csv",
                                  lambda tmp: manifest.to_csv(tmp, index=False, lineterminator="\r\n"))
    return parquet_path, csv_path


def export_model(model: torch.nn.Module, out_dir: str | Path, *, architecture: str,
                 class_names: list[str], input_shape: tuple[int, int, int],
                 normalization: dict, configuration: dict, metrics: dict,
                 suggestion_temperature: float | None = None, flag_cut: float | None = None) -> dict[str, Path]:
    """Weights, a TorchScript module and a model card, loadable without this code.

    The TorchScript module maps a normalised float batch (B, C, H, W) to class logits; the card
    says how to normalise (``(pixel / 255 - mean) / std`` per channel) and what the classes are,
    and (``given_label_evidence``) the temperature a mixnn run's suggestion tempered the
    predictions to (``SampleOutputs.suggestion_temperature``), which the relabel flow applies,
    and the probability of being wrong its manifest's flags start at (``SampleOutputs.flag_cut``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    weights_path = replace_atomically(out_dir / "model.pt",
                                      lambda tmp: torch.save(model.state_dict(), tmp))

    example = torch.zeros(1, *input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, but it is what loads anywhere
        # with plain torch.jit.load and no model code; the warning would only confuse users.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(model, example)
    script_path = replace_atomically(out_dir / "model.torchscript.pt",
                                     lambda tmp: scripted.save(str(tmp)))

    card = {
        "model_card_version": MODEL_CARD_VERSION,
        "architecture": architecture,
        "classes": list(class_names),
        "num_classes": len(class_names),
        "input_shape": list(input_shape),
        "input": "float32 batch (B, C, H, W): pixels / 255, then (x - mean) / std per channel",
        "output": "class logits (B, num_classes); softmax gives probabilities",
        "normalization": normalization,
        "files": {"weights": weights_path.name, "torchscript": script_path.name},
        "configuration": configuration,
        "metrics": metrics,
        "given_label_evidence": {"temperature": suggestion_temperature,
                                 "flag_cut": None if flag_cut is None or not np.isfinite(flag_cut) else flag_cut},
    }
    card_path = write_json_atomic(card, out_dir / "model_card.json")
    return {"weights": weights_path, "torchscript": script_path, "card": card_path}
