"""A resumed study's ASHA is told the curves its earlier attempts recorded: it stops a weak trial after a crash as it
would have without one (hpo.study._scheduler_history)."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from hpo.study._scheduler_history import RecordedTrial, WithHistory, with_history
from hpo.study.per_model_asha import PerModelASHA

OPTIONS = {"time_attr": "epoch", "max_t": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 1}
BEFORE = [RecordedTrial(0, {"model": "small"}, {1: 0.80, 2: 0.84, 3: 0.85, 4: 0.86}),
          RecordedTrial(1, {"model": "small"}, {1: 0.60})]  # pruned at the first rung


def first_epoch(scheduler, model: str, value: float, trial_id: str = "new") -> str:
    trial = Trial("__fake", config={"model": model}, trial_id=trial_id, stub=True)
    scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": value})


def told(scheduler, recorded=BEFORE):
    scheduler = with_history(scheduler, recorded, "val_accuracy", "epoch")
    scheduler.set_search_properties("val_accuracy", "max")  # as Tune does, before its first trial
    return scheduler


def test_the_first_trial_after_a_crash_meets_the_trials_before_it():
    # the median of 0.80 and 0.60 at epoch 1 is 0.70: 0.65 is below it
    assert first_epoch(told(AsyncHyperBandScheduler(**OPTIONS)), "small", 0.65) == "STOP"
    assert first_epoch(told(AsyncHyperBandScheduler(**OPTIONS)), "small", 0.75) == "CONTINUE"
    # without the history, the same trial is the first at its rung: no one to stop it against
    assert first_epoch(told(AsyncHyperBandScheduler(**OPTIONS), recorded=[]), "small", 0.65) == "CONTINUE"


def test_every_rung_is_filled_as_the_recorded_trials_filled_it():
    scheduler = told(AsyncHyperBandScheduler(**OPTIONS))
    first_epoch(scheduler, "small", 0.90)
    trial = Trial("__fake", config={"model": "small"}, trial_id="later", stub=True)
    scheduler.on_trial_add(None, trial)
    scheduler.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": 0.95})
    # at epoch 2 only trial 0 (0.84) was recorded before: 0.83 is below it
    assert scheduler.on_trial_result(None, trial, {"epoch": 2, "val_accuracy": 0.83}) == "STOP"


def test_per_model_rungs_get_each_recorded_trial_by_its_model():
    scheduler = told(PerModelASHA(**OPTIONS))
    assert first_epoch(scheduler, "big", 0.10, "b") == "CONTINUE"  # small's history is not big's
    assert first_epoch(scheduler, "small", 0.65, "s") == "STOP"


def test_a_scheduler_without_rungs_or_a_study_without_history_is_left_as_it_is():
    fifo, asha = FIFOScheduler(), AsyncHyperBandScheduler(**OPTIONS)
    assert with_history(fifo, BEFORE, "val_accuracy", "epoch") is fifo
    assert with_history(asha, [], "val_accuracy", "epoch") is asha
    assert isinstance(with_history(asha, BEFORE, "val_accuracy", "epoch"), WithHistory)
