"""k-fold cross-validation as a trial's objective (trainers.cv): fold means per epoch, stratified seeded folds,
exact resume, a checkpoint the orchestrator reads like any other. Tiny BERT, real SST-2 rows."""

import dataclasses
from collections import Counter

import pytest

from tests.helpers.reporters import Interrupted, KeepLatest
from trainers import TrainConfig, fine_tune, load_model, prepare_data
from trainers.checkpoint import FOLDS_DIR, is_complete, read_summary
from trainers.cv import folds


def test_folds_are_stratified_disjoint_and_seeded():
    labels = [0] * 60 + [1] * 30
    splits = folds(labels, 3, seed=1)
    held = [i for _, h in splits for i in h]
    assert sorted(held) == list(range(90)), "every row is held out exactly once"
    for train, held_out in splits:
        assert not set(train) & set(held_out)
        assert Counter(labels[i] for i in held_out) == {0: 20, 1: 10}
    assert folds(labels, 3, seed=1) == splits and folds(labels, 3, seed=2) != splits


def test_cross_validation_reports_fold_means_and_resumes_exactly(small_sst2, tiny_bert, tmp_path):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=120, validation_limit=40)
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=1e-3, num_threads=1,
                         cv_folds=3)
    straight = KeepLatest(tmp_path / "straight")
    best = fine_tune(config, data, straight)
    assert [m["epoch"] for m in straight.history] == [1, 2]
    assert all(m["cv_folds"] == 3 and "cv_sd" in m for m in straight.history)
    assert best["val_accuracy"] == max(m["val_accuracy"] for m in straight.history)

    folder = tmp_path / "straight"
    names = {p.name for p in folder.iterdir()}
    assert is_complete(names) and sorted(p.name for p in (folder / FOLDS_DIR).iterdir()) == [
        "fold_0", "fold_1", "fold_2"]
    assert read_summary(folder)["epoch"] == 2
    load_model(folder / "best")  # fold 0's model at the best epoch of the fold mean

    with pytest.raises(Interrupted):
        fine_tune(config, data, KeepLatest(tmp_path / "first", stop_after=1))
    resumed = KeepLatest(tmp_path / "resumed")
    fine_tune(dataclasses.replace(config, resume_from=str(tmp_path / "first")), data, resumed)
    assert [m["epoch"] for m in resumed.history] == [2]
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"], abs=1e-6)
