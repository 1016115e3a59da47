"""Scoring newly arrived samples with the model and feature index of a finished run.

Each new sample gets two opinions about its label: the trained model's prediction q, and the
suggested labels of its K nearest training samples in the model's feature space (their share
per class, h). For a mixnn run, q is tempered to the run's temperature, averaged with h, and the
given label weighed as evidence through the run's noise model, P(given | true) from its
manifest's confident joint (``label_posterior``; nothing read from the other samples scored with
it, so a sample's verdict does not depend on its batch): the posterior s. For a ce / mixup run
s = (q + h) / 2. Then ``suggested_label = argmax s``, ``label_quality = s[given]`` (the estimated
probability that the given label is correct) and ``is_label_issue = label_quality < s[suggested]``.
(Flagging from the training run's own flag cut, as its manifest does, was measured and not
adopted: BENCHMARKS.md "Thirty-ninth pass".)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from mixnn_core.augment import normalize
from mixnn_core.files import read_json, read_torch_state, read_vector_column
from mixnn_core.knn import search_index
from mixnn_core.label_posterior import given_label_posterior, run_noise_model, tempered
from mixnn_core.models import FeatureClassifier, build_model
from mixnn_core.outputs import SampleOutputs, sample_outputs


@dataclass
class ExportedModel:
    """A finished run's model, its card, and the feature index of its training set."""

    model: FeatureClassifier
    card: dict
    train_index: faiss.Index
    train_labels: np.ndarray  # (N_train,) suggested (corrected) label of every indexed sample
    normalize_features: bool
    # P(given j | true k) (C, C) of the training run (label_posterior.given_label_likelihood of the
    # confident joint of its manifest's given_label and soft_label) and the temperature its
    # suggestion tempered the predictions to; None for a ce / mixup run, whose suggestion does
    # not weigh the given label
    likelihood: np.ndarray | None = None
    temperature: float | None = None


def read_model_card(run_dir: str | Path) -> dict:
    """The model card of a finished run, or a clear error when there is none."""
    card_path = Path(run_dir) / "model" / "model_card.json"
    if not card_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no exported model ({card_path} is missing); "
                                "point at the run directory of a finished clean-dataset run")
    return read_json(card_path)


def load_exported_model(run_dir: str | Path) -> ExportedModel:
    """Load ``model/`` (weights + card), ``index/final.faiss`` and the manifest of a run."""
    run_dir = Path(run_dir)
    card = read_model_card(run_dir)
    model = build_model(card["architecture"], tuple(card["input_shape"]), card["num_classes"])
    state = read_torch_state(run_dir / "model" / card["files"]["weights"],
                             remedy="; re-run the clean-dataset run into this run directory with "
                                    "the same arguments to export it again")
    model.load_state_dict(state)
    manifest = pq.read_table(run_dir / "manifest.parquet", columns=["given_label", "suggested_label", "soft_label"])
    index = faiss.read_index(str(run_dir / "index" / "final.faiss"))
    if index.ntotal != len(manifest):
        raise ValueError(f"{run_dir}: the feature index holds {index.ntotal} samples, the manifest "
                         f"{len(manifest)}")
    if "given_label_evidence" not in card:
        raise ValueError(f"{run_dir / 'model' / 'model_card.json'} is model card version "
                         f"{card.get('model_card_version')}, without given_label_evidence; re-run the "
                         "clean-dataset run into this run directory with the same arguments to export it again")
    temperature = card["given_label_evidence"]["temperature"]
    likelihood = None
    if temperature is not None:
        given = manifest.column("given_label").to_numpy().astype(np.int64)
        likelihood = run_noise_model(given, read_vector_column(manifest, "soft_label"))
    return ExportedModel(model.eval(), card, index, manifest.column("suggested_label").to_numpy().astype(np.int64),
                         bool(card["configuration"]["normalize_features"]), likelihood, temperature)


def content_keys(images: np.ndarray, given_label_names: list[str]) -> list[str]:
    """A sample's identity for idempotent scoring: sha256 of its pixels, shape and given label.

    The same image arriving again with the same label (under any file name) is the same sample;
    the same image with another label is a new one to score.
    """
    keys = []
    for pixels, label in zip(images, given_label_names):
        digest = hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes() + b"\0" + label.encode())
        keys.append(digest.hexdigest())
    return keys


def conform_images(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images (N, C, H, W) brought to the model's (C, H, W): channels averaged or repeated,
    then a bilinear resize when the size differs."""
    channels, height, width = input_shape
    x = torch.from_numpy(images).float()
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x.repeat(1, channels // x.shape[1], 1, 1)
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def features_and_predictions(exported: ExportedModel, images: np.ndarray,
                             batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The model's features (N, D) of new samples and its predicted probabilities q (N, C)."""
    card = exported.card
    images = conform_images(images, tuple(card["input_shape"]))
    mean = torch.tensor(card["normalization"]["mean"])
    std = torch.tensor(card["normalization"]["std"])
    # Filled in place, as in Trainer.evaluation_pass (collecting per-batch results fragments
    # the heap between the large activations).
    features = np.empty((len(images), exported.model.feature_dim), dtype=np.float32)
    probs = np.empty((len(images), card["num_classes"]), dtype=np.float64)
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        h = exported.model.features(normalize(torch.from_numpy(images[rows]), mean, std))
        features[rows] = h.numpy()
        probs[rows] = F.softmax(exported.model.classifier(h), dim=1).numpy()
    return features, probs


def neighbor_votes(exported: ExportedModel, features: np.ndarray, num_neighbors: int = 10) -> np.ndarray:
    """Share h (N, C) of each new sample's K nearest training samples suggesting each class."""
    k = min(num_neighbors, exported.train_index.ntotal)
    neighbors = search_index(exported.train_index, features, k, normalize=exported.normalize_features)
    votes = np.zeros((len(features), exported.card["num_classes"]))
    np.add.at(votes, (np.arange(len(features))[:, None], exported.train_labels[neighbors]), 1.0 / k)
    return votes


def predictions_and_votes(exported: ExportedModel, images: np.ndarray, num_neighbors: int = 10,
                          batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The two opinions on each new sample, both (N, C) rows summing to 1: the model's predicted
    probabilities q and the share h of its K nearest training samples suggesting each class."""
    features, probs = features_and_predictions(exported, images, batch_size)
    return probs, neighbor_votes(exported, features, num_neighbors)


def class_opinion(exported: ExportedModel, given_labels: np.ndarray, probs: np.ndarray,
                  votes: np.ndarray) -> np.ndarray:
    """What the run says (N, C) about the true class of new samples: the mean of its prediction
    q and its neighbours' vote h; for a mixnn run, q tempered to the run's temperature first and
    the given label then weighed by the run's noise model (``given_label_posterior``), as its
    manifest's suggestions were."""
    if exported.temperature is None:
        return (probs + votes) / 2
    mean = (tempered(probs, exported.temperature) + votes) / 2
    return given_label_posterior(given_labels, mean, exported.likelihood)


def verdict(exported: ExportedModel, given_labels: np.ndarray, probs: np.ndarray,
            votes: np.ndarray) -> SampleOutputs:
    """The run's verdict on new samples from its prediction q and neighbours' vote h (N, C):
    suggestion, label quality and flags of ``class_opinion`` s (module docstring)."""
    return sample_outputs(given_labels, class_opinion(exported, given_labels, probs, votes),
                          np.full(len(given_labels), np.nan))


def score_samples(exported: ExportedModel, images: np.ndarray, given_labels: np.ndarray,
                  num_neighbors: int = 10, batch_size: int = 256) -> pd.DataFrame:
    """Prediction, neighbour vote and label verdict for new samples with given labels.

    Returns one row per sample: ``predicted_label``, ``predicted_confidence`` (the model's),
    ``neighbor_label`` and ``neighbor_agreement`` (share of the K training neighbours whose
    corrected label equals the given label), ``suggested_label``, ``suggested_confidence``,
    ``label_quality``, ``is_label_issue``.
    """
    probs, votes = predictions_and_votes(exported, images, num_neighbors, batch_size)
    combined = verdict(exported, given_labels, probs, votes)
    rows = np.arange(len(images))
    return pd.DataFrame({
        "predicted_label": probs.argmax(axis=1),
        "predicted_confidence": probs.max(axis=1),
        "neighbor_label": votes.argmax(axis=1),
        "neighbor_agreement": votes[rows, given_labels],
        "suggested_label": combined.suggested_label,
        "suggested_confidence": combined.suggested_confidence,
        "label_quality": combined.label_quality,
        "is_label_issue": combined.is_label_issue,
    })
