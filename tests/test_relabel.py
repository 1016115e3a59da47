"""Relabelling incoming data: two batches, versions that are never rewritten, idempotency."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from flows.relabel_flow import relabel
from tests.conftest import DIGITS_RUN


def write_batch(folder, indices, wrong):
    """An image folder of digits ``indices``; those in ``wrong`` get the label (d + 1) % 10."""
    data = load_digits()
    pixels = np.round(data.images * 255 / 16).astype(np.uint8)
    for i in indices:
        label = (data.target[i] + 1) % 10 if i in wrong else data.target[i]
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / str(label) / f"digit-{i:04d}.png")
    return folder


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_batches_make_two_versions_and_rescoring_adds_nothing(digits_run, tmp_path):
    run_dir, _ = digits_run
    output = tmp_path / "incoming"
    first_wrong = set(range(0, 60, 4))
    first = write_batch(tmp_path / "batch1", range(60), first_wrong)

    outcome = relabel(incoming=str(first), model_run_dir=str(run_dir), output_dir=str(output))
    assert outcome["version"] == 1 and outcome["n_new"] == 60
    part1 = output / "manifest" / "part-v0001.parquet"
    v1 = pd.read_parquet(part1)
    assert len(v1) == 60 and (v1["version"] == 1).all()
    assert v1["source_ref"].str.startswith(tuple("0123456789")).all()
    truly_wrong = v1["source_ref"].map(lambda ref: int(ref.split("-")[1][:4]) in first_wrong)
    flagged = v1["is_label_issue"]
    # the 6-epoch model of the shared run should catch most of the 15 wrong labels and flag few
    # of the 45 right ones (flagging at random, the same count would hit about 1 in 4)
    print(f"\nflagged {int(flagged.sum())}: {int((flagged & truly_wrong).sum())} of 15 wrong labels,"
          f" {int((flagged & ~truly_wrong).sum())} of 45 right ones")
    assert (flagged & truly_wrong).sum() >= 10
    assert (flagged & ~truly_wrong).sum() <= 9
    assert np.allclose(v1.loc[~flagged, "label_quality"] >= v1.loc[~flagged, "suggested_confidence"], True)
    fingerprint = sha256(part1)

    # second batch: 20 already scored (same pixels, same labels, other file names) + 20 new
    second = tmp_path / "batch2"
    write_batch(second, range(40, 80), first_wrong)
    outcome = relabel(incoming=str(second), model_run_dir=str(run_dir), output_dir=str(output))
    assert outcome == {**outcome, "version": 2, "n_new": 20, "n_already_scored": 20}
    v2 = pd.read_parquet(output / "manifest" / "part-v0002.parquet")
    assert len(v2) == 20 and set(v2["content_key"]).isdisjoint(v1["content_key"])
    assert sha256(part1) == fingerprint  # earlier versions are never rewritten

    # the same batch again: nothing new, no new version
    outcome = relabel(incoming=str(second), model_run_dir=str(run_dir), output_dir=str(output))
    assert outcome["version"] is None and outcome["n_new"] == 0
    assert sorted(p.name for p in (output / "manifest").iterdir()) == [
        "part-v0001.parquet", "part-v0002.parquet"]
    everything = pd.read_parquet(output / "manifest")
    assert len(everything) == 80 and everything["content_key"].is_unique
    log = json.loads((output / "versions.json").read_text())
    assert [entry["version"] for entry in log] == [1, 2]
    assert (output / "batches" / "v0002" / "dataset.parquet").exists()
    assert not list((output / "staging").iterdir())


def test_relabel_names_a_run_without_a_model(tmp_path, prefect_server):
    batch = write_batch(tmp_path / "batch", range(3), set())
    with pytest.raises(FileNotFoundError, match="no exported model"):
        relabel(incoming=str(batch), model_run_dir=str(tmp_path), output_dir=str(tmp_path / "out"))


def test_unreadable_exported_weights_are_named_and_a_rerun_exports_them_again(digits_run, tmp_path):
    from flows.mixnn_flow import mixnn

    run_dir = shutil.copytree(digits_run[0], tmp_path / "run")
    weights = run_dir / "model" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    batch = write_batch(tmp_path / "batch", range(5), set())
    with pytest.raises(ValueError, match=r"model\.pt is not a readable torch file.*re-run"):
        relabel(incoming=str(batch), model_run_dir=str(run_dir), output_dir=str(tmp_path / "out"))

    rerun = mixnn(run_dir=str(run_dir), **DIGITS_RUN)
    assert rerun["metrics"] == digits_run[1]["metrics"]
    scored = relabel(incoming=str(batch), model_run_dir=str(run_dir), output_dir=str(tmp_path / "out"))
    assert scored["version"] == 1 and scored["n_new"] == 5


def test_a_model_card_without_the_suggestion_temperature_is_named_with_what_to_do(digits_run, tmp_path):
    run_dir = shutil.copytree(digits_run[0], tmp_path / "run")
    card_path = run_dir / "model" / "model_card.json"
    card = json.loads(card_path.read_text())
    assert card["model_card_version"] == "3" and card["given_label_evidence"]["temperature"] > 0
    del card["given_label_evidence"]
    card_path.write_text(json.dumps({**card, "model_card_version": "1"}))
    batch = write_batch(tmp_path / "batch", range(5), set())
    with pytest.raises(ValueError, match=r"model_card\.json is model card version 1, without given_label_evidence; re-run"):
        relabel(incoming=str(batch), model_run_dir=str(run_dir), output_dir=str(tmp_path / "out"))


def test_a_samples_verdict_does_not_depend_on_what_arrived_with_it(digits_run):
    from mixnn_core.relabel import load_exported_model, score_samples

    exported = load_exported_model(digits_run[0])
    assert exported.temperature > 0 and exported.likelihood.shape == (10, 10)
    data = load_digits()
    images = np.round(data.images[:40] * 255 / 16).astype(np.uint8)[:, None]
    given = np.where(np.arange(40) % 4 == 0, (data.target[:40] + 1) % 10, data.target[:40])
    together = score_samples(exported, images, given)
    for i in (0, 1, 4, 7):
        alone = score_samples(exported, images[i:i + 1], given[i:i + 1])
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), together.iloc[[i]].reset_index(drop=True),
                                      check_exact=False, rtol=1e-6)
    assert together.loc[[0, 4], "is_label_issue"].any()  # a flagged label is among those scored alone
