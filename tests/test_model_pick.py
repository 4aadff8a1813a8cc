"""search.model_choice=ei_per_second: the next trial's model by expected improvement per second of its cost, from
the study's own trials; refused where there is no model to choose."""

from __future__ import annotations

import pytest

from hpo import build_spec, compose
from hpo.errors import ConfigError
from hpo.states import TrialState
from hpo.stores.registry import TrialRecord
from hpo.study.model_pick import ModelEvidence, evidence, pick_model


def spec_of(*overrides):
    return build_spec(compose(["study.name=p", *overrides]))


def test_a_model_not_tried_yet_goes_first_and_an_unmeasured_cost_leaves_the_choice_to_the_sampler():
    assert pick_model({"a": ModelEvidence((0.9,), 1.0), "b": ModelEvidence((), None)}, maximize=True, epochs=3) == "b"
    assert pick_model({"a": ModelEvidence((0.9,), 1.0), "b": ModelEvidence((0.8,), None)}, maximize=True,
                      epochs=3) is None


def test_cost_decides_between_models_equally_promising():
    same = (0.80, 0.84)
    assert pick_model({"cheap": ModelEvidence(same, 10.0), "dear": ModelEvidence(same, 50.0)}, maximize=True,
                      epochs=3) == "cheap"
    # a loss (minimized): the model whose trials reach lower values is the one worth its cost
    assert pick_model({"cheap": ModelEvidence((0.50, 0.52), 10.0), "dear": ModelEvidence((0.30,), 40.0)},
                      maximize=False, epochs=3) == "dear"


def test_evidence_counts_each_models_trials_with_a_result_and_its_measured_seconds():
    trials = [TrialRecord(number=0, state=TrialState.COMPLETED, params={"model": "a"}, best_metric=0.8),
              TrialRecord(number=1, state=TrialState.PRUNED, params={"model": "a"}, best_metric=0.7),
              TrialRecord(number=2, state=TrialState.RUNNING, params={"model": "b"}, best_metric=0.9),
              TrialRecord(number=3, state=TrialState.FAILED, params={"model": "b"}, best_metric=None)]
    seen = evidence(["a", "b"], trials, {"a": [10.0, 12.0]})
    assert seen == {"a": ModelEvidence((0.8, 0.7), 11.0), "b": ModelEvidence((), None)}


def test_model_choice_by_ei_per_second_needs_the_model_searched():
    with pytest.raises(ConfigError) as err:
        spec_of("search.model_choice=ei_per_second")
    assert err.value.key == "search.model_choice" and "search=models" in err.value.message
    with pytest.raises(ConfigError) as err:
        spec_of("search=models", "search.model_choice=ucb")
    assert err.value.key == "search.model_choice"
    assert spec_of("search=models", "search.model_choice=ei_per_second").study.model_choice == "ei_per_second"
