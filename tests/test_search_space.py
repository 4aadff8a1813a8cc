import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config.search_space import SearchSpace
from hpo.errors import ConfigError


def test_translates_each_kind_of_entry():
    space = SearchSpace.from_config(
        {
            "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
            "batch_size": {"choices": [16, 32]},
            "freeze_depth": {"low": 0, "high": "auto"},
            "weight_decay": {"low": 0.0, "high": 0.1, "step": 0.05},
            "dropout": 0.1,
        },
        num_layers=6,
    )
    d = space.distributions
    assert d["learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert d["batch_size"] == CategoricalDistribution([16, 32])
    assert d["freeze_depth"] == IntDistribution(0, 6)
    assert d["weight_decay"] == FloatDistribution(0.0, 0.1, step=0.05)
    assert space.fixed == {"dropout": 0.1}


@pytest.mark.parametrize(
    "entry, key, words",
    [
        ({"learning_rate": {"low": -1, "high": 1e-3, "log": True}}, "search.learning_rate.low", "out of range"),
        ({"learning_rate": {"low": 1e-3, "high": 1e-5}}, "search.learning_rate", "above high"),
        ({"freeze_depth": {"low": 0, "high": 7}}, "search.freeze_depth.high", "6 encoder blocks"),
        ({"batch_size": {"choices": []}}, "search.batch_size.choices", "non-empty"),
        ({"batch_size": {"choices": [16.5]}}, "search.batch_size.choices", "integer"),
        ({"lr": {"low": 1e-5, "high": 1e-3}}, "search.lr", "unknown hyperparameter"),
        ({"dropout": {"low": 0.0, "hgh": 0.2}}, "search.dropout", "unknown field"),
        ({"dropout": 1.5, "learning_rate": {"low": 1e-5, "high": 1e-4}}, "search.dropout", "[0, 1)"),
        ({"dropout": 0.1}, "search", "nothing to search"),
    ],
)
def test_bad_entries_name_the_key(entry, key, words):
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config(entry, num_layers=6)
    assert err.value.key == key
    assert words in str(err.value)


def test_grid_needs_finite_values():
    space = SearchSpace.from_config(
        {"batch_size": {"choices": [16, 32]}, "learning_rate": {"low": 1e-5, "high": 1e-4, "grid": [1e-5, 1e-4]}},
        num_layers=2,
    )
    assert space.grid_space() == {"batch_size": [16, 32], "learning_rate": [1e-5, 1e-4]}
    with pytest.raises(ConfigError, match="search.learning_rate: sampler=grid"):
        SearchSpace.from_config({"learning_rate": {"low": 1e-5, "high": 1e-4}}, num_layers=2).grid_space()


def test_midpoint_is_the_centre_of_every_kind_of_range():
    space = SearchSpace.from_config({
        "learning_rate": {"low": 2e-5, "high": 2e-3, "log": True}, "batch_size": {"choices": [16, 32]},
        "freeze_depth": {"low": 0, "high": "half"}, "weight_decay": {"low": 0.0, "high": 0.1, "step": 0.03},
        "dropout": {"low": 0.0, "high": 0.2}}, num_layers=12)
    assert space.midpoint() == {"learning_rate": pytest.approx(2e-4), "batch_size": 16, "freeze_depth": 3,
                                "weight_decay": pytest.approx(0.06), "dropout": pytest.approx(0.1)}


def test_a_new_study_starts_at_the_midpoint_only_when_asked_and_never_over_a_warm_start(tmp_path):
    from hpo.config.compose import build_spec, compose
    from hpo.stores.registry import Registry
    from hpo.study.warm_start import first_points

    def spec(*overrides):
        return build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", *overrides]))

    registry = Registry.open(f"sqlite:///{tmp_path}/registry.db")
    assert first_points(spec("search.first_trial=sampler"), registry) == []
    midpoint = spec("search.first_trial=midpoint")
    assert first_points(midpoint, registry) == [midpoint.space.midpoint()]
    with pytest.raises(ConfigError, match="warm_start.from"):  # the warm start, not the midpoint, decides
        first_points(spec("search.first_trial=midpoint", "warm_start.from=elsewhere"), registry)
