"""A dimension's kind changes from the command line as the README says (issue 42): a set over a range, a range
over a set, a fixed value over either, for the built-in spaces and a preset's own; a truly unknown key keeps its
hint. Through ``compose``/``build_spec`` (what `hpo sweep` and the API use) and the CLI's override check."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config.compose import build_spec, compose, with_kind_changes
from hpo.config.overrides import check_overrides
from hpo.errors import ConfigError


def _space(tmp_path, *overrides):
    return build_spec(compose([f"storage.root={tmp_path}", *overrides])).space


def test_a_set_over_a_range(tmp_path):
    space = _space(tmp_path, "search.learning_rate={choices: [0.0001, 0.001]}")
    assert space.distributions["learning_rate"] == CategoricalDistribution([0.0001, 0.001])


def test_a_range_over_a_set(tmp_path):
    space = _space(tmp_path, "search.batch_size={low: 8, high: 64, step: 8}")
    assert space.distributions["batch_size"] == IntDistribution(8, 64, step=8)


def test_a_fixed_value_over_a_range_or_a_set(tmp_path):
    space = _space(tmp_path, "search.dropout=0.1", "search.batch_size=32")
    assert space.fixed["dropout"] == 0.1 and space.fixed["batch_size"] == 32
    assert "dropout" not in space.distributions and "batch_size" not in space.distributions


def test_a_mapping_of_the_same_kind_still_changes_only_what_it_names(tmp_path):
    space = _space(tmp_path, "search.learning_rate={high: 0.01}")
    lr = space.distributions["learning_rate"]
    assert isinstance(lr, FloatDistribution) and lr.high == 0.01 and lr.log


def test_a_presets_own_dimension_changes_kind_too(tmp_path):
    cfg = compose(["experiment=custom_mlp", "search.lr={choices: [0.01, 0.1]}", "search.hidden={low: 16, high: 256}"])
    assert dict(cfg.search.lr) == {"choices": [0.01, 0.1]} and dict(cfg.search.hidden) == {"low": 16, "high": 256}


def test_the_cli_check_accepts_it_and_an_unknown_key_keeps_its_hint():
    check_overrides(with_kind_changes(["search.learning_rate={choices: [0.0001, 0.001]}"]))
    with pytest.raises(ConfigError, match=r"search.learning_rat: no such setting; did you mean search.learning_rate"):
        check_overrides(with_kind_changes(["search.learning_rat={choices: [0.1]}"]))
