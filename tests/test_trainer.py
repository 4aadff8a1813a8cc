"""The trainer on its own: no Ray, no MLflow, a tiny BERT and real SST-2 rows."""

import torch

from trainers import ConsoleReporter, TextClassifier, TrainConfig, fine_tune, prepare_data
from trainers.loop import evaluate


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

    reloaded = TextClassifier.from_checkpoint(tmp_path / "best")
    again = evaluate(reloaded, data.validation, data.pad_token_id, 64, torch.device("cpu"))
    assert again["val_accuracy"] == best["val_accuracy"]


def test_early_stopping_patience_ends_the_run(small_sst2, tiny_bert):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64)
    reporter = ConsoleReporter()
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=6, learning_rate=1e-9, warmup_ratio=0.0,
                         early_stopping_patience=1, metric="val_loss", mode="min", num_threads=1)
    fine_tune(config, data, reporter)
    assert len(reporter.history) < 6
    assert reporter.history[-1].get("early_stopped") == 1.0
