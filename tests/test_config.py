"""Config composition and validation: bad input stops early with one line naming the key; checking a
config writes nothing."""

import pytest

from hpo.config.compose import build_spec, compose
from hpo.config.overrides import check_overrides
from hpo.config.resolvers import PROJECT_ROOT
from hpo.errors import ConfigError
from tests.helpers import bad_configs
from tests.helpers.bad_configs import CONFIG_VALUES, OVERRIDES
from trainers import TrainConfig


def test_default_experiment_composes_from_the_shipped_data(tmp_path, monkeypatch):
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    spec = build_spec(compose(["experiment=sst2_minilm", f"storage.root={tmp_path}"]))
    assert spec.name == "sst2_minilm"
    assert spec.data.train_path == PROJECT_ROOT / "data" / "sst2" / "train.csv.gz"
    assert spec.model.num_layers == 6  # all-MiniLM-L6-v2, from the packaged model's config
    assert spec.space.distributions["freeze_depth"].high == 3  # `high: half` of its 6 blocks
    assert isinstance(spec.trainer, TrainConfig) and spec.trainer.pooling == "mean"
    assert (spec.objective.metric, spec.objective.mode, spec.study.feedback) == ("val_accuracy", "max", "pruned")
    assert spec.storage.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert spec.sampler.name == "TPESampler" and type(spec.sampler.build()).__name__ == "TPESampler"
    assert type(spec.scheduler.build()).__name__ == "AsyncHyperBandScheduler"


def test_group_overrides_win_over_the_experiment(sst2_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_DIR", str(sst2_dir))
    spec = build_spec(compose([
        "experiment=sst2_minilm", "model=tiny_bert", "sampler=random", "scheduler=fifo",
        "search.learning_rate=3e-5", "~search.dropout", f"storage.root={tmp_path}", "search.feedback=complete",
    ]))
    assert spec.model.num_layers == 2
    assert spec.sampler.name == "RandomSampler" and spec.scheduler.name == "FIFOScheduler"
    assert spec.space.fixed == {"learning_rate": 3e-5, "class_weights": "none"} and spec.trainer.learning_rate == 3e-5
    assert "dropout" not in spec.space.distributions
    assert spec.study.feedback == "complete"


def test_checking_a_config_writes_nothing(tmp_path):
    """The tiny test model is built when a study starts, not when its config is checked."""
    root = tmp_path / "runs"
    spec = build_spec(compose(["model=tiny_bert", f"storage.root={root}"]))
    assert spec.model.name_or_path == str(root / "cache" / "tiny_bert")
    assert not root.exists()


def test_several_gpus_per_trial_are_a_group_of_one_gpu_workers(tmp_path):
    """No one process drives several GPUs (DataParallel is gone): ``resources.gpu=2`` is a DDP group of two."""
    spec = build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", "resources.gpu=2"]))
    assert (spec.resources.workers_per_trial, spec.resources.gpu) == (2, 1)
    one = build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", "resources.gpu=1"]))
    assert (one.resources.workers_per_trial, one.resources.gpu) == (1, 1)


@pytest.mark.parametrize("case", [c[0] for c in CONFIG_VALUES])
def test_bad_values_name_the_key(case, tmp_path):
    _, overrides, key = bad_configs.case(case)
    with pytest.raises(ConfigError) as err:
        build_spec(compose([f"storage.root={tmp_path}", *overrides]))
    assert err.value.key.startswith(key), err.value.key
    assert "\n" not in str(err.value)
    assert not (tmp_path / "registry.db").exists()


@pytest.mark.parametrize("case", [c[0] for c in OVERRIDES])
def test_bad_overrides_are_refused_before_composing(case):
    _, overrides, key = bad_configs.case(case)
    with pytest.raises(ConfigError) as err:
        check_overrides(overrides)
    assert err.value.key.startswith(key), err.value.key


def test_csv_data_needs_its_paths(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", "data=csv", f"storage.root={tmp_path}"]))
    assert err.value.key == "data.train_path"
    assert "data.train_path=" in str(err.value)


def test_a_config_stored_by_the_previous_release_resumes(tmp_path):
    """Stored configs without search.feedback or search.first_trial (0.1.0): resuming one takes today's default."""
    from omegaconf import OmegaConf

    from hpo.config.compose import stored_config

    old = OmegaConf.to_container(compose(["model=tiny_bert", f"storage.root={tmp_path}"]), resolve=True)
    del old["search"]["feedback"], old["search"]["first_trial"]
    spec = build_spec(stored_config(OmegaConf.to_yaml(old)))
    assert spec.study.feedback == "pruned" and spec.study.first_trial in ("midpoint", "sampler", "portfolio")
    assert "learning_rate" in spec.space.distributions


def test_credentials_are_stored_masked_and_restored_from_the_url_given_again(tmp_path):
    from hpo.config.compose import stored_config

    pg = "postgresql+psycopg://hpo:pw-1@db.example:5432/hpo"
    bucket = "s3://AKID:SK-2@bucket/p?endpoint_override=h:9000&secret_key=SK-2"
    cfg = compose([f"storage.root={tmp_path}", f"registry.url={pg}", f"storage.optuna_url={pg}",
                   f"storage.checkpoints='{bucket}'"])
    stored = build_spec(cfg).config_yaml
    assert "pw-1" not in stored and "SK-2" not in stored and "AKID" not in stored
    back = stored_config(stored, given=[pg])
    assert back.registry.url == pg and back.storage.optuna_url == pg, "same server: the given password fills both"
    assert "***" in back.storage.checkpoints, "a bucket's keys come back only when passed again"
