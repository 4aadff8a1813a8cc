"""Config composition and validation: bad input stops early with one line naming the key."""

import pytest

from hpo.config import build_spec, compose
from hpo.errors import ConfigError


def test_default_experiment_composes_and_validates(sst2_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_DIR", str(sst2_dir))
    spec = build_spec(compose(["experiment=sst2_minilm", f"storage.root={tmp_path}"]))
    assert spec.name == "sst2_minilm"
    assert spec.num_layers == 6  # all-MiniLM-L6-v2, from the packaged model's config
    assert spec.space.distributions["freeze_depth"].high == 6  # `high: auto`
    assert spec.trainer["pooling"] == "mean"
    assert spec.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert type(spec.sampler).__name__ == "TPESampler"
    assert type(spec.scheduler).__name__ == "AsyncHyperBandScheduler"


def test_group_overrides_win_over_the_experiment(sst2_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_DIR", str(sst2_dir))
    spec = build_spec(compose([
        "experiment=sst2_minilm", "model=tiny_bert", "sampler=random", "scheduler=fifo",
        "search.learning_rate=3e-5", "~search.dropout", f"storage.root={tmp_path}",
    ]))
    assert spec.num_layers == 2
    assert type(spec.sampler).__name__ == "RandomSampler"
    assert type(spec.scheduler).__name__ == "FIFOScheduler"
    assert spec.space.fixed == {"learning_rate": 3e-5}
    assert "dropout" not in spec.space.distributions


@pytest.mark.parametrize(
    "override, key",
    [
        ("search.learning_rate.low=-1", "search.learning_rate.low"),
        ("model.name_or_path=/nope", "model.name_or_path"),
        ("data.train_path=missing.csv", "data.train_path"),
        ("data.text_column=sentence", "data.text_column"),
        ("study.metric=accuracy", "study.metric"),
        ("study.mode=up", "study.mode"),
        ("study.num_samples=0", "study.num_samples"),
        ("study.name=has space", "study.name"),
        ("model.pooling=max", "model.pooling"),
        ("sampler._target_=optuna.samplers.NoSuchSampler", "sampler"),
        ("scheduler.grace_period=-3", "scheduler"),
        ("search.freeze_depth.high=9", "search.freeze_depth.high"),
    ],
)
def test_bad_values_name_the_key(override, key, sst2_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_DIR", str(sst2_dir))
    with pytest.raises(ConfigError) as err:
        build_spec(compose([f"storage.root={tmp_path}", override]))
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_csv_data_needs_its_paths(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", "data=csv", f"storage.root={tmp_path}"]))
    assert err.value.key == "data.train_path"
    assert "data.train_path=" in str(err.value)
