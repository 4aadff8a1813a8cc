"""The task contract (trainers.tasks) on real data: sentence pairs, regression on the STS-B subset, and the config
checks that refuse what a task cannot do, by key. Tiny locally built BERT; no Ray, no servers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hpo import ConfigError, build_spec, compose
from hpo.config.resolvers import PROJECT_ROOT
from trainers import ConsoleReporter, TrainConfig
from trainers.metrics import EVALUATION_FILE
from trainers.tasks import DataSource, SourceError, load_task

STSB = PROJECT_ROOT / "data" / "stsb"
PAIRS = {"text": "sentence1", "text_pair": "sentence2", "label": "score"}
REGRESSION = ["task=text_regression", "data=stsb", "model=tiny_bert"]


def _source(**changes) -> DataSource:
    values = {"train_path": STSB / "train.csv.gz", "validation_path": STSB / "dev.csv.gz", "columns": PAIRS,
              "train_limit": 96, "validation_limit": 48} | changes
    return DataSource(**values)


def test_pairs_are_tokenized_together_with_types_and_float_targets(tiny_bert):
    data = load_task("text_regression").prepare(_source(), str(tiny_bert), max_length=64, cache_dir=None)
    assert data.regression and data.text_pair and data.num_labels == 1
    assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in data.train.labels)
    ids, types = data.train.input_ids[0], data.train.token_type_ids[0]
    assert len(ids) == len(types) and types[0] == 0 and types[-1] == 1  # [CLS] a [SEP] b [SEP]
    assert data.profile(data.validation)["num_rows"] == 48


def test_a_regression_trial_reports_correlations_and_keeps_a_scatter(tiny_bert, tmp_path):
    task = load_task("text_regression")
    data = task.prepare(_source(), str(tiny_bert), max_length=64, cache_dir=None)
    reporter = ConsoleReporter(keep_dir=tmp_path / "best")  # the best epoch's model as a full folder
    cfg = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=1e-3, metric="val_spearman",
                      regression_loss="huber", num_threads=1)
    best = task.fine_tune(cfg, data, reporter)
    assert {"val_rmse", "val_mae", "val_pearson", "val_spearman", "val_loss"} <= set(best)
    assert -1.0 <= best["val_spearman"] <= 1.0 and best["val_rmse"] > 0
    evaluation = json.loads((tmp_path / "best" / EVALUATION_FILE).read_text())
    assert evaluation["kind"] == "regression" and len(evaluation["true"]) == len(evaluation["predicted"]) == 48

    outputs, targets = task.validation_outputs(tmp_path / "best", data, 32)
    assert task.metrics(outputs, targets)["val_spearman"] == pytest.approx(best["val_spearman"], abs=1e-5)
    assert task.metrics(task.combine([outputs, outputs]), targets)["val_rmse"] == pytest.approx(best["val_rmse"],
                                                                                                abs=1e-5)


def test_a_pair_model_predicts_pairs_only(tiny_bert, tmp_path):
    """Its ONNX export is checked by the whole pair-regression study (tests/test_task_studies.py), not in the fast
    tier (torch.export's first use costs seconds of imports and tracing)."""
    task = load_task("text_regression")
    data = task.prepare(_source(train_limit=32), str(tiny_bert), max_length=64, cache_dir=None)
    folder = tmp_path / "full"
    task.fine_tune(TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=1, metric="val_rmse", mode="min",
                               num_threads=1), data, ConsoleReporter(keep_dir=folder))
    inputs = task.sample_inputs(_source(), 8)
    assert all(isinstance(row, tuple) and len(row) == 2 for row in inputs)
    table = task.predictor(folder)(inputs)
    assert list(table.columns) == ["score"] and len(table) == 8 and np.isfinite(table["score"]).all()
    with pytest.raises(ValueError, match="pairs"):
        task.predictor(folder)(["one text alone"])
    assert task.describe_model(folder)["onnx_inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("value, message", [("n/a", "row 3: score 'n/a' is not a number"),
                                            ("inf", "row 3: score is 'inf'; targets must be finite")])
def test_a_bad_regression_target_is_named_with_its_row(tmp_path, tiny_bert, value, message):
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["sentence1", "sentence2", "score"], ["a", "b", "1.0"], ["c", "d", value]])
    with pytest.raises(SourceError, match=message) as err:
        load_task("text_regression").prepare(_source(train_path=path, train_limit=None), str(tiny_bert),
                                             max_length=32, cache_dir=None)
    assert err.value.key == "data.train_path"


def test_a_regression_study_is_checked_against_its_task():
    spec = build_spec(compose(REGRESSION))
    assert spec.task == "text_regression" and spec.objective.metric == "val_spearman"
    assert spec.data.columns == {"text": "sentence1", "text_pair": "sentence2", "label": "score"}
    assert spec.trainer.regression_loss == "mse"


@pytest.mark.parametrize("overrides, key, words", [
    (["study.metric=val_accuracy"], "study.metric", "not reported by task=text_regression"),
    (["study.metric=val_rmse", "study.mode=max"], "study.mode", "should be minimized"),
    (["search.class_weights=balanced"], "search.class_weights", "no classes"),
    (["data.text_pair_column=sentence3"], "data.text_pair_column", "no column 'sentence3'"),
    (["task.loss=l1"], "task.loss", "mse"),
])
def test_what_a_regression_task_cannot_do_is_refused_by_key(overrides, key, words):
    with pytest.raises(ConfigError) as err:
        build_spec(compose([*REGRESSION, *overrides]))
    assert err.value.key == key and words in err.value.message


def test_an_unknown_task_is_refused_with_the_tasks_there_are():
    with pytest.raises(ConfigError, match="text_classification"):
        build_spec(compose(["model=tiny_bert", "task.name=images"]))


def test_every_tasks_metrics_reach_mlflow():
    from hpo.stores.tracking import LOGGED_METRICS
    from trainers.tasks import TASKS

    assert all(set(info.metrics) <= set(LOGGED_METRICS) for info in TASKS.values())
