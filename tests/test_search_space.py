import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.errors import ConfigError
from hpo.search_space import SearchSpace


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
