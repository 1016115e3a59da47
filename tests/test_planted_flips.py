"""bench/planted_flips.py: known flips along a confident joint, and a run's detection on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import compare_tune, report, suite, tune
from bench.planted_flips import flip_transition, plant_flips, planted_flip_scores


def test_flips_follow_the_joint_and_never_keep_the_label():
    joint = np.diag([50.0, 50.0, 50.0, 50.0])
    joint[1, 0] = 30  # true class 0 given label 1: labels 0 flip to 1
    joint[2, 0], joint[3, 0] = 10, 0  # ... or to 2, a quarter as often; never to 3
    transition = flip_transition(joint)
    np.testing.assert_allclose(transition[0], [0, 0.75, 0.25, 0])
    np.testing.assert_allclose(transition[1], [1 / 3, 0, 1 / 3, 1 / 3])  # no sample of 1 given another label
    np.testing.assert_allclose(transition.sum(axis=1), 1.0)
    labels = np.repeat(np.arange(4), 2500)
    flipped, planted = plant_flips(labels, 0.2, joint, seed=[0, 1])
    assert planted.sum() == 2000 and (flipped[~planted] == labels[~planted]).all()
    assert (flipped[planted] != labels[planted]).all()
    from_zero = flipped[planted & (labels == 0)]
    assert set(from_zero.tolist()) == {1, 2} and 0.68 < (from_zero == 1).mean() < 0.82
    again, planted_again = plant_flips(labels, 0.2, joint, seed=[0, 1])
    assert np.array_equal(again, flipped) and np.array_equal(planted_again, planted)
    assert not np.array_equal(plant_flips(labels, 0.2, joint, seed=[0, 2])[1], planted)


def test_scores_count_planted_rows_as_wrong_and_kept_unplanted_rows_as_right():
    before = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    trained = np.array([1, 1, 2, 2, 1, 2, 0, 0])  # rows 0, 3 and 7 planted
    planted = trained != before
    kept = np.array([1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)  # rows 5 and 7 not kept (7 planted: scored)
    flags = np.array([1, 0, 0, 0, 1, 1, 0, 1], dtype=bool)  # catches planted 0 and 7, misses 3; flags kept 4
    suggested = np.where(flags, before, trained)
    quality = np.where(flags, 0.1, 0.9)
    scores = planted_flip_scores(before, trained, planted, kept, suggested, quality, flags)
    assert scores["n_planted"] == 3 and scores["n_kept_unplanted"] == 4  # rows 1, 2, 4, 6
    assert scores["recall"] == pytest.approx(2 / 3) and scores["precision"] == pytest.approx(2 / 3)
    assert scores["planted_recovery"] == pytest.approx(2 / 3)
    # 3 x 4 pairs: the two caught flips beat three right rows and tie one, the missed one ties three
    assert scores["auroc"] == pytest.approx((2 * 3 + 2 * 0.5 + 3 * 0.5) / 12)
    with pytest.raises(ValueError, match="needs planted rows"):
        planted_flip_scores(before, before, np.zeros(8, bool), kept, suggested, quality, flags)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(SystemExit):  # before any training
        tune.main(["--setting", "digits-sym40", "--grid", "lr=0.02", "--plant", "1.5", "--out", str(tmp_path)])
    assert not (tmp_path / "reference").exists()
    with pytest.raises(ValueError, match="share of labels to flip"):
        plant_flips(np.zeros(10, int), 0.0, np.eye(2), 0)
    with pytest.raises(ValueError, match="joint must be"):
        flip_transition(np.ones(3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        plant_flips(np.array([0, 2]), 0.5, np.eye(2), 0)


def test_tune_scores_the_runs_on_flips_it_planted(tmp_path):
    """Every value of the grid trains on the same planted labels; the scores land in the file."""
    tuned = tune.main(["--setting", "digits-sym40", "--method", "ce", "--epochs", "3",
                       "--grid", "lr=0.02,0.001", "--folds", "2", "--plant", "0.1", "--out", str(tmp_path)])
    assert tuned.name == "digits-sym40-ce-lr=0.02,0.001-f2-plant0.1.json"
    result = json.loads(tuned.read_text())
    reference = json.loads((tmp_path / "reference" / "digits-sym40-e3-s0.json").read_text())
    assert result["plant"] == 0.1 and np.asarray(reference["joint"]).shape == (10, 10)
    fit_rows = sum(len(fit) for fit, _ in tune.held_out_splits(suite.load(suite.SETTINGS["digits-sym40"], 0)
                                                                .noisy_labels, 0, 2))
    trained, untrained = (result["results"][value]["planted_flips"] for value in ("0.02", "0.001"))
    assert trained["n_planted"] == untrained["n_planted"] == pytest.approx(0.1 * fit_rows, abs=2)
    assert trained["n_kept_unplanted"] == untrained["n_kept_unplanted"] > trained["n_planted"]
    # a model that learnt something flags the planted flips better than one that barely trained
    assert trained["auroc"] > max(0.6, untrained["auroc"])
    per_fold = result["results"]["0.02"]["planted_flips_per_fold"]  # each fold scored alone: they add up
    assert len(per_fold) == 2 and sum(fold["n_planted"] for fold in per_fold) == trained["n_planted"]
    assert sum(fold["n_flagged"] for fold in per_fold) == trained["n_flagged"]
    assert min(fold["recall"] for fold in per_fold) <= trained["recall"] <= max(fold["recall"] for fold in per_fold)
    compared = compare_tune.main([f"{tuned}:0.001", f"{tuned}:0.02"])
    assert compared["planted f1"]["second"] == trained["f1"] and compared["planted f1"]["first"] == untrained["f1"]
    assert compared["planted auroc"]["per_fold_difference"] == pytest.approx(
        [a["auroc"] - b["auroc"] for a, b in zip(per_fold, result["results"]["0.001"]["planted_flips_per_fold"])])
    planted_row = "| digits-sym40 e3 2-fold, 10% of the labels planted wrong | ce | lr=0.02 |"
    assert planted_row in report.tuning_table(tmp_path)


def test_a_reference_from_before_the_joint_keeps_its_rows_and_gets_a_complete_twin(tmp_path):
    """Results already scored on an old reference's kept rows stay reproducible: asking for the
    joint leaves that file alone and makes (then reuses) ``...-with-joint.json``."""
    data = suite.load(suite.SETTINGS["digits-sym40"], 0)

    def reference(need_joint):
        return tune.reference_run("digits-sym40", data.train.images, data.noisy_labels, 2, 0, tmp_path,
                                  need_joint=need_joint)

    complete = reference(False)
    old = tmp_path / "digits-sym40-e2-s0.json"
    before_the_joint = {key: value for key, value in complete.items() if key != "joint"}
    before_the_joint["rows_kept"] = [True] * len(data.noisy_labels)  # marks the old file's rows
    old.write_text(json.dumps(before_the_joint))
    assert all(reference(False)["rows_kept"])
    with_joint = reference(True)
    twin = tmp_path / "digits-sym40-e2-s0-with-joint.json"
    assert twin.exists() and "joint" in with_joint and not all(with_joint["rows_kept"])
    assert json.loads(old.read_text()) == before_the_joint
    twin.write_text(json.dumps({**with_joint, "rows_kept": [False] * len(data.noisy_labels)}))
    assert not any(reference(True)["rows_kept"])  # read from the twin, not made again
