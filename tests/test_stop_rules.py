"""Study-level early stopping and warm start: the rules alone (fast), then in real studies on a local Ray."""

from __future__ import annotations

import optuna
import pytest

from hpo.config.compose import build_spec, compose
from hpo.states import TrialState
from hpo.stores.registry import Registry
from hpo.study.stopping import StopSignal, StudyStop
from hpo.study.warm_start import warm_start_points
from trainers.objective import Objective

ACCURACY, LOSS = Objective("val_accuracy", "max"), Objective("val_loss", "min")


def test_target_fires_on_the_first_result_at_least_as_good():
    rules = StudyStop(LOSS, StopSignal(), target=0.3)
    rules.result(0.31)
    assert not rules.should_stop()
    rules.result(0.3)
    assert rules.should_stop() and rules.reason == "target reached: val_loss=0.3000 (target 0.3)"


def test_plateau_counts_finished_trials_from_earlier_attempts():
    rules = StudyStop(ACCURACY, StopSignal(), patience=2, min_delta=0.01, finished_bests=[0.80, 0.85])
    rules.trial_finished(0.855)
    assert not rules.should_stop(), "two finished trials after 0.80 improved it by 0.055"
    rules.trial_finished(0.84)
    assert rules.should_stop() and rules.reason.startswith("plateau: best val_accuracy improved by 0.005 < min_delta")


def test_a_failed_trial_without_a_value_does_not_count_toward_the_plateau():
    rules = StudyStop(ACCURACY, StopSignal(), patience=1)
    rules.trial_finished(None)
    rules.trial_finished(0.5)
    assert not rules.should_stop()


def test_time_budget_counts_driver_time_of_earlier_attempts():
    assert StudyStop(ACCURACY, StopSignal(), time_budget_s=60, elapsed_before_s=61).should_stop()
    assert not StudyStop(ACCURACY, StopSignal(), time_budget_s=60, elapsed_before_s=0).should_stop()


def test_epoch_budget_counts_every_trials_epochs_including_earlier_attempts():
    rules = StudyStop(ACCURACY, StopSignal(), epoch_budget=5, epochs_before=3)
    rules.result(0.7)
    assert not rules.should_stop()
    rules.result(None)  # an epoch without the metric is still compute spent
    assert rules.should_stop() and rules.reason == "epoch budget of 5 used up"


def test_the_stop_signal_ends_the_study_with_its_reason_and_wins_over_later_rules():
    signal = StopSignal()
    rules = StudyStop(ACCURACY, signal, target=0.5)
    signal.request("stopped by user (hpo stop)")
    signal.request("a second request changes nothing")
    rules.result(0.9)
    assert rules.should_stop() and rules.reason == "stopped by user (hpo stop)"


def _spec(tmp_path, small_sst2, tiny_bert, name, *overrides):
    return build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
        f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
        f"study.name={name}", "study.max_concurrent=1", "trainer.max_epochs=2", "scheduler=fifo",
        f"storage.root={tmp_path}", "tracking.register_best=false", *overrides,
    ]))


@pytest.mark.integration
@pytest.mark.slow  # whole studies
@pytest.mark.parametrize(
    "overrides, reason_start, max_trials",
    [
        (["study.stop.target=0.0"], "target reached: val_accuracy=", 1),
        (["study.stop.patience=2", "study.stop.min_delta=0.5"], "plateau: best val_accuracy improved by", 3),
        (["study.time_budget_s=1"], "time budget of 1s used up", 1),
        (["study.epoch_budget=4"], "epoch budget of 4 used up", 2),
    ],
    ids=["target", "plateau", "time_budget", "epoch_budget"],
)
def test_stop_rule_ends_the_study_and_records_why(overrides, reason_start, max_trials, tmp_path, small_sst2,
                                                  tiny_bert, local_ray):
    from mlflow import MlflowClient

    from hpo.study.run import run_study

    spec = _spec(tmp_path, small_sst2, tiny_bert, "rule", "study.num_samples=8", *overrides)
    outcome = run_study(spec)
    assert outcome.status == "completed" and outcome.stop_reason.startswith(reason_start)
    record = Registry(spec.storage.registry_url).require("rule")
    assert record.stop_reason == outcome.stop_reason
    parent = MlflowClient(spec.storage.tracking_uri).get_run(outcome.parent_run_id)
    assert parent.data.tags["hpo.stop_reason"] == outcome.stop_reason
    study = optuna.load_study(study_name="rule", storage=spec.storage.optuna_url)
    assert 1 <= len(study.trials) <= max_trials
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    trials = Registry(spec.storage.registry_url).trials("rule")
    assert {t.state for t in trials} <= {TrialState.COMPLETED, TrialState.STOPPED}, "FIFO prunes nothing: a trial " \
        "the rule cut short is stopped"
    if outcome.stop_reason.startswith("epoch budget"):  # every epoch counted once: a finished trial's last too
        assert sum(len(t.values) for t in Registry(spec.storage.registry_url).trials("rule")) == 4


@pytest.fixture(scope="module")
def source_study(tmp_path_factory, small_sst2, tiny_bert, local_ray):
    """A finished 3-trial, 1-epoch study (random sampler, val_loss) to warm-start from."""
    from hpo.study.run import run_study

    root = tmp_path_factory.mktemp("warm")
    spec = _spec(root, small_sst2, tiny_bert, "source", "study.num_samples=3", "study.metric=val_loss",
                 "study.mode=min", "sampler=random", "trainer.max_epochs=1")
    run_study(spec)
    ranked = LOSS.ranked(Registry(spec.storage.registry_url).trials("source"), key=lambda t: t.best_metric)
    return root, [t.params for t in ranked]


@pytest.mark.integration
@pytest.mark.slow  # whole studies
def test_warm_start_evaluates_the_source_studys_best_configs_first(source_study, small_sst2, tiny_bert):
    from hpo.study.run import run_study

    root, ranked = source_study
    target = _spec(root, small_sst2, tiny_bert, "target", "study.num_samples=2", "study.metric=val_loss",
                   "study.mode=min", "warm_start.from=source", "warm_start.top_k=2")
    run_study(target)
    first = sorted(optuna.load_study(study_name="target", storage=target.storage.optuna_url).trials,
                   key=lambda t: t.number)
    assert [t.params for t in first[:2]] == ranked[:2]


@pytest.mark.integration
@pytest.mark.slow  # its source is a whole study
def test_warm_start_skips_configs_outside_the_new_space(source_study, small_sst2, tiny_bert):
    root, ranked = source_study
    keep = ranked[0]["batch_size"]
    narrow = _spec(root, small_sst2, tiny_bert, "narrow", "study.num_samples=1", "warm_start.from=source",
                   "warm_start.top_k=10", "study.metric=val_loss", "study.mode=min",
                   f"search.batch_size.choices=[{keep}]")
    points = warm_start_points(narrow, Registry(narrow.storage.registry_url))
    assert points == [p for p in ranked if p["batch_size"] == keep]
