"""The trainer on its own: no Ray, no MLflow, a tiny BERT and real SST-2 rows."""

import dataclasses
import shutil

import pytest
import torch

from trainers import ConsoleReporter, TrainConfig, fine_tune, load_model, prepare_data
from trainers.loop import predict, validation_metrics


def test_fine_tune_reports_every_epoch_and_checkpoints_improvements(small_sst2, tiny_bert, tmp_path):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert)
    reporter = ConsoleReporter(keep_dir=tmp_path / "best")
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=1e-3, batch_size=32,
                         freeze_depth=1, layer_lr_decay=0.8, num_threads=1)
    best = fine_tune(config, data, reporter)

    assert [m["epoch"] for m in reporter.history] == [1, 2]
    for metrics in reporter.history:
        assert {"val_loss", "val_accuracy", "val_f1_macro", "val_auc", "train_loss"} <= set(metrics)
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert best["val_accuracy"] == max(m["val_accuracy"] for m in reporter.history)

    reloaded = load_model(tmp_path / "best")
    again = validation_metrics(*predict(reloaded, data.validation, data.pad_token_id, 64, torch.device("cpu")))
    assert again["val_accuracy"] == best["val_accuracy"]


def test_early_stopping_patience_ends_the_run(small_sst2, tiny_bert):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64)
    reporter = ConsoleReporter()
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=6, learning_rate=1e-9, warmup_ratio=0.0,
                         early_stopping_patience=1, metric="val_loss", mode="min", num_threads=1)
    fine_tune(config, data, reporter)
    assert len(reporter.history) < 6
    assert reporter.history[-1].get("early_stopped") == 1.0


class _KeepEpoch:
    """Records every epoch and keeps a copy of one epoch's checkpoint."""

    def __init__(self, epoch: int, dest) -> None:
        self.epoch, self.dest, self.history = epoch, dest, []

    def report(self, metrics, checkpoint_dir) -> None:
        self.history.append(dict(metrics))
        if metrics["epoch"] == self.epoch:
            shutil.copytree(checkpoint_dir, self.dest)


def test_resume_continues_exactly_where_the_checkpoint_left_off(small_sst2, tiny_bert, tmp_path):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert)
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=3, learning_rate=2e-3, batch_size=32,
                         dropout=0.2, num_threads=1)
    straight = _KeepEpoch(1, tmp_path / "epoch1")
    fine_tune(config, data, straight)

    resumed = _KeepEpoch(0, None)
    fine_tune(dataclasses.replace(config, resume_from=str(tmp_path / "epoch1")), data, resumed)
    assert [m["epoch"] for m in resumed.history] == [2, 3]
    for a, b in zip(straight.history[1:], resumed.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_resuming_a_finished_run_reports_its_last_epoch_again(small_sst2, tiny_bert, tmp_path):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64)
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=1, num_threads=1)
    first = _KeepEpoch(1, tmp_path / "last")
    fine_tune(config, data, first)
    again = _KeepEpoch(0, None)
    fine_tune(dataclasses.replace(config, resume_from=str(tmp_path / "last")), data, again)
    assert again.history == first.history


def test_the_checkpoint_layout_is_what_the_orchestrator_reads(small_sst2, tiny_bert, tmp_path):
    """trainers/checkpoint.py writes it; hpo.checkpoints finds the newest complete one and its best model."""
    from hpo.stores.checkpoints import CheckpointStore
    from trainers import checkpoint

    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64)
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, num_threads=1)
    trial = tmp_path / "trial"
    fine_tune(config, data, _KeepEpoch(1, trial / "checkpoint_000000"))
    fine_tune(config, data, _KeepEpoch(2, trial / "checkpoint_000001"))
    (trial / "checkpoint_000002").mkdir()  # a crash mid-write: no summary, no state, no best/
    (trial / "checkpoint_000002" / "config.json").write_text("{}")

    assert checkpoint.is_complete({p.name for p in (trial / "checkpoint_000001").iterdir()})
    assert not checkpoint.is_complete({"config.json"})
    latest = CheckpointStore(str(tmp_path)).latest_of_trial(str(trial), None)
    assert latest == str(trial / "checkpoint_000001") and checkpoint.read_summary(latest)["epoch"] == 2
    best = load_model(checkpoint.best_model(latest))
    assert best.config.id2label == {0: "0", 1: "1"}


class _RunsCode:
    """What a hostile pickle does: calls a function (here: creates a file) when it is loaded."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_or_data_cache_that_would_run_code_is_refused(small_sst2, tiny_bert, tmp_path):
    import pickle

    from trainers import checkpoint, prepare_data

    folder, marker = tmp_path / "ckpt", tmp_path / "ran"
    folder.mkdir()
    torch.save({"epoch": 1, "payload": _RunsCode(marker)}, folder / checkpoint.STATE_FILE)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.restore(folder, None, None, tmp_path / "best")
    assert not marker.exists(), "the checkpoint's code ran"

    cache = tmp_path / "cache"
    first = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, cache_dir=cache)
    (cached,) = cache.glob("*.pt")
    torch.save(_RunsCode(marker), cached)  # a cache file replaced by someone else
    again = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, cache_dir=cache)
    assert not marker.exists() and again.train.labels == first.train.labels, "refused, tokenized again"


def test_the_best_epoch_writes_its_per_class_results_and_balanced_weights_train(small_sst2, tiny_bert, tmp_path):
    import json

    from trainers.metrics import EVALUATION_FILE

    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=128)
    reporter = ConsoleReporter(keep_dir=tmp_path / "best")
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=1e-3, num_threads=1,
                         class_weights="balanced")
    best = fine_tune(config, data, reporter)
    evaluation = json.loads((tmp_path / "best" / EVALUATION_FILE).read_text())
    assert evaluation["epoch"] == best["epoch"] and evaluation["labels"] == list(data.label_names)
    matrix = evaluation["confusion_matrix"]
    assert sum(map(sum, matrix)) == len(data.validation)
    assert sum(matrix[i][i] for i in range(len(matrix))) / len(data.validation) == pytest.approx(best["val_accuracy"])
    assert {"val_balanced_accuracy"} <= set(best)
