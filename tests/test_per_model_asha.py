"""scheduler=asha_per_model: a trial meets only its own model's trials at a rung, where one ASHA would cut it."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler

from hpo import build_spec, compose
from hpo.errors import ConfigError
from hpo.study.per_model_asha import PerModelASHA

OPTIONS = {"time_attr": "epoch", "max_t": 3, "grace_period": 1, "reduction_factor": 2, "brackets": 1}


def decisions(scheduler, results):
    scheduler.set_search_properties("val_accuracy", "max")
    out = []
    for i, (model, value) in enumerate(results):
        trial = Trial("__fake", config={"model": model}, trial_id=str(i), stub=True)
        scheduler.on_trial_add(None, trial)
        out.append(scheduler.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": value}))
    return out


def test_a_slower_models_trials_meet_only_their_own_models_at_a_rung():
    results = [("small", 0.80), ("small", 0.82), ("big", 0.70), ("big", 0.75), ("big", 0.60)]
    one = decisions(AsyncHyperBandScheduler(**OPTIONS), results)
    per_model = decisions(PerModelASHA(**OPTIONS), results)
    assert one == ["CONTINUE", "CONTINUE", "STOP", "STOP", "STOP"]  # every big trial cut against small's first epoch
    assert per_model == ["CONTINUE", "CONTINUE", "CONTINUE", "CONTINUE", "STOP"]  # only the weakest big one


def test_the_config_builds_it_and_checks_its_options_in_hpos_words():
    spec = build_spec(compose(["study.name=p", "search=models", "scheduler=asha_per_model"]))
    assert isinstance(spec.scheduler.build(), PerModelASHA)
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["study.name=p", "search=models", "scheduler=asha_per_model", "scheduler.grace_period=0"]))
    assert err.value.key == "scheduler.grace_period"
