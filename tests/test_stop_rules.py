"""Study-level early stopping and warm start, in-process on a local Ray with a tiny BERT."""

from __future__ import annotations

import optuna
import pytest

from hpo.config import build_spec, compose
from hpo.registry import Registry
from hpo.tuner import _warm_start_points, run_study


def _spec(tmp_path, small_sst2, tiny_bert, name, *overrides):
    return build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
        f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
        f"study.name={name}", "study.max_concurrent=1", "trainer.max_epochs=2", "scheduler=fifo",
        f"storage.root={tmp_path}", "tracking.register_best=false", *overrides,
    ]))


@pytest.mark.parametrize(
    "overrides, reason_start, max_trials",
    [
        (["study.stop.target=0.0"], "target reached: val_accuracy=", 1),
        (["study.stop.patience=2", "study.stop.min_delta=0.5"], "plateau: best val_accuracy improved by", 3),
        (["study.time_budget_s=1"], "time budget of 1s used up", 1),
    ],
    ids=["target", "plateau", "time_budget"],
)
def test_stop_rule_ends_the_study_and_records_why(overrides, reason_start, max_trials, tmp_path, small_sst2,
                                                  tiny_bert, local_ray):
    spec = _spec(tmp_path, small_sst2, tiny_bert, "rule", "study.num_samples=8", *overrides)
    outcome = run_study(spec)
    assert outcome.status == "completed" and outcome.stop_reason.startswith(reason_start)
    record = Registry(spec.registry_url).require("rule")
    assert record.stop_reason == outcome.stop_reason
    from mlflow import MlflowClient

    parent = MlflowClient(spec.tracking_uri).get_run(outcome.parent_run_id)
    assert parent.data.tags["hpo.stop_reason"] == outcome.stop_reason
    study = optuna.load_study(study_name="rule", storage=spec.optuna_url)
    assert 1 <= len(study.trials) <= max_trials
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


@pytest.fixture(scope="module")
def source_study(tmp_path_factory, small_sst2, tiny_bert, local_ray):
    """A finished 3-trial, 1-epoch study (random sampler, val_loss) to warm-start from."""
    root = tmp_path_factory.mktemp("warm")
    spec = _spec(root, small_sst2, tiny_bert, "source", "study.num_samples=3", "study.metric=val_loss",
                 "study.mode=min", "sampler=random", "trainer.max_epochs=1")
    run_study(spec)
    bests = {t.number: t.best_metric for t in Registry(spec.registry_url).trials("source")}
    trials = optuna.load_study(study_name="source", storage=spec.optuna_url).trials
    return root, [trials[n].params for n in sorted(bests, key=bests.get)]


def test_warm_start_evaluates_the_source_studys_best_configs_first(source_study, small_sst2, tiny_bert):
    root, ranked = source_study
    target = _spec(root, small_sst2, tiny_bert, "target", "study.num_samples=2", "study.metric=val_loss",
                   "study.mode=min", "warm_start.from=source", "warm_start.top_k=2")
    run_study(target)
    first = sorted(optuna.load_study(study_name="target", storage=target.optuna_url).trials, key=lambda t: t.number)
    assert [t.params for t in first[:2]] == ranked[:2]


def test_warm_start_skips_configs_outside_the_new_space(source_study, small_sst2, tiny_bert):
    root, ranked = source_study
    keep = ranked[0]["batch_size"]
    narrow = _spec(root, small_sst2, tiny_bert, "narrow", "study.num_samples=1", "warm_start.from=source",
                   "warm_start.top_k=10", "study.metric=val_loss", "study.mode=min",
                   f"search.batch_size.choices=[{keep}]")
    points = _warm_start_points(narrow, Registry(narrow.registry_url))
    assert points == [p for p in ranked if p["batch_size"] == keep]
