"""``search.first_trial=portfolio``: the shipped configs become a study's first trials, inside its space, for its
models; a task with no portfolio is refused before anything runs, and so is a portfolio file of one's own that cannot
serve (``search.portfolio_file``)."""

from __future__ import annotations

import json

import pytest

from hpo import build_spec, compose
from hpo._optuna import contains
from hpo.config.search_space import MODEL
from hpo.errors import ConfigError
from hpo.study import portfolio as portfolio_module
from hpo.study.portfolio import portfolio, portfolio_points
from hpo.study.warm_start import first_points, untried

ENTRIES = {"text": [{"model": "mpnet_base", "learning_rate": 2e-5, "batch_size": 16, "freeze_depth": 5},
                    {"model": "minilm_l6", "learning_rate": 1e-4, "batch_size": 32, "freeze_depth": 1,
                     "weight_decay": 0.05, "dropout": 0.07, "layer_lr_decay": 0.9, "warmup_ratio": 0.1},
                    {"model": "minilm_l6", "learning_rate": 9e-4, "batch_size": 128, "freeze_depth": 9}],
           "image": [{"model": "efficientnet_lite0", "learning_rate": 1e-3, "batch_size": 32, "freeze_depth": 0}]}


def spec_of(*overrides):
    return build_spec(compose(["study.name=p", "search.first_trial=portfolio", *overrides]))


def inside(spec, point):
    return all(contains(spec.space.distributions[n], v) for n, v in point.items() if n != MODEL) and \
        set(point) == set(spec.space.applicable(None, point.get(MODEL)))


@pytest.fixture
def known(monkeypatch):
    monkeypatch.setattr(portfolio_module, "portfolio", lambda searches_model=False, path=None: ENTRIES)


def test_a_single_model_study_starts_from_every_entry_moved_inside_its_space(known):
    spec = spec_of("model=minilm_l6")
    points = first_points(spec, registry=None)
    assert len(points) == 3 and MODEL not in points[0]
    assert points[1]["learning_rate"] == 1e-4 and points[1]["weight_decay"] == 0.05
    assert points[2]["learning_rate"] == 3e-4 and points[2]["batch_size"] == 64 and points[2]["freeze_depth"] == 3
    assert all(inside(spec, p) for p in points)


def test_a_value_lands_on_a_stepped_ranges_grid(known):
    spec = spec_of("model=minilm_l6", "+search.dropout.step=0.05")
    assert [p["dropout"] for p in portfolio_points(spec)][:2] == [0.1, 0.05]  # the centre; 0.07 onto the grid
    assert all(inside(spec, p) for p in portfolio_points(spec))


def test_a_study_that_searches_the_model_gets_its_choices_entries_under_their_own_names(known):
    spec = spec_of("search=models")
    points = portfolio_points(spec)
    assert [p[MODEL] for p in points] == ["mpnet_base", "minilm_l6", "minilm_l6"]
    assert points[0]["learning_rate.mpnet_base"] == 2e-5 and points[0]["freeze_depth.mpnet_base"] == 5
    assert all(inside(spec, p) for p in points)


def test_a_searched_model_the_portfolio_never_recorded_gets_its_centre_after_the_entries(known):
    spec = spec_of("search=models", "search.model={choices: [minilm_l3, mpnet_base]}")
    points = portfolio_points(spec)
    assert [p[MODEL] for p in points] == ["mpnet_base", "minilm_l3"]  # the one entry it has, then l3's centre
    assert points[1] == spec.space.midpoint("minilm_l3")


def test_search_models_starts_from_the_portfolio_by_default():
    assert build_spec(compose(["study.name=p", "search=models"])).study.first_trial == "portfolio"


def test_a_study_that_searches_the_model_starts_from_the_portfolio_learned_over_models(monkeypatch):
    one_model = {"text": [{"model": "minilm_l6", "learning_rate": 1e-4}]}
    over_models = {"text": [{"model": "mpnet_base", "learning_rate": 2e-5},
                            {"model": "minilm_l6", "learning_rate": 1e-4}]}
    monkeypatch.setattr(portfolio_module, "portfolio",
                        lambda searches_model=False, path=None: over_models if searches_model else one_model)
    assert [p[MODEL] for p in portfolio_points(spec_of("search=models"))] == ["mpnet_base", "minilm_l6"]
    assert [p["learning_rate"] for p in portfolio_points(spec_of("model=minilm_l6"))] == [1e-4]


def test_with_the_method_searched_a_freezing_entry_is_a_freeze_trial_and_a_method_it_lacks_starts_centred(known):
    points = portfolio_points(spec_of("search=methods"))
    assert [p["method"] for p in points] == ["freeze", "freeze", "freeze"]
    lora = spec_of("search=methods", "search.method={choices: [full, lora]}")
    assert [p["method"] for p in portfolio_points(lora)] == ["full", "full", "full"]  # encoder training, as recorded
    only_lora = portfolio_points(spec_of("search=methods", "search.method={choices: [lora]}"))
    assert all(p["method"] == "lora" and "learning_rate" not in p and p["lora_rank"] == 8 for p in only_lora)


def test_an_image_study_gets_the_image_entries(known):
    spec = spec_of("task=image_classification", "model=efficientnet_lite0", "data=fashion_mnist", "search=images")
    (point,) = portfolio_points(spec)
    assert point["learning_rate"] == 1e-3 and inside(spec, point)


def test_the_shipped_portfolio_fits_the_default_text_and_image_studies():
    text, image = spec_of(), spec_of("task=image_classification", "model=efficientnet_lite0", "data=fashion_mnist",
                                     "search=images")
    assert len(portfolio()["text"]) >= 4 and len(portfolio()["image"]) >= 4
    for spec in (text, image):
        points = portfolio_points(spec)
        assert points and all(inside(spec, p) for p in points)


def test_task_custom_has_no_portfolio():
    with pytest.raises(ConfigError) as err:
        spec_of("experiment=custom_mlp")
    assert err.value.key == "search.first_trial" and "midpoint or sampler" in err.value.message



def test_a_resumed_study_drops_the_first_trials_it_already_ran():
    """What the ledger queues on resume: a point counts as run when a trial's params hold it (floats as Optuna
    stores them), whatever else that trial sampled."""
    points = [{"learning_rate": 1e-4, "batch_size": 32}, {"learning_rate": 3e-5, "batch_size": 16}]
    ran = [{"learning_rate": 1e-4 * (1 + 1e-12), "batch_size": 32, "dropout": 0.1}, {}]
    assert untried(points, ran) == points[1:]
    assert untried(points, [{"learning_rate": 1e-4, "batch_size": 64}]) == points


def test_a_distillation_study_leaves_the_teachers_settings_to_the_sampler(known):
    points = portfolio_points(spec_of("distill.teacher=teach"))
    assert points and all("distill_alpha" not in p and "distill_temperature" not in p and "learning_rate" in p
                          for p in points)


def _own(tmp_path, content) -> str:
    path = tmp_path / "mine.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return f"search.portfolio_file={path}"


def test_a_portfolio_file_of_ones_own_gives_the_first_trials(tmp_path):
    mine = {"portfolio": {"text": [{"model": "minilm_l6", "learning_rate": 5e-5, "batch_size": 32}]},
            "models": {"text": [{"model": "mpnet_base", "learning_rate": 2e-5, "batch_size": 16}]}}
    one = first_points(spec_of("model=minilm_l6", _own(tmp_path, mine)), registry=None)
    assert [(p["learning_rate"], p["batch_size"]) for p in one] == [(5e-5, 32)]
    searched = first_points(spec_of("search=models", _own(tmp_path, mine)), registry=None)
    assert [p[MODEL] for p in searched] == ["mpnet_base", "minilm_l6"]  # its entry, then the model it lacks, centred
    assert searched[0]["learning_rate.mpnet_base"] == 2e-5
    assert first_points(spec_of("search.first_trial=sampler", _own(tmp_path, mine)), registry=None) == []


@pytest.mark.parametrize("content, words", [
    (None, "cannot be read as a portfolio"),
    ("{not json", "cannot be read as a portfolio"),
    ({"portfolio": [{"learning_rate": 1e-4}]}, "its 'portfolio' is no mapping of modality to a list of configs"),
    ({"portfolio": {"image": [{"learning_rate": 1e-3}]}, "models": {}}, "holds no text configs"),
])
def test_a_portfolio_file_that_cannot_serve_is_refused_naming_the_key_and_the_fix(tmp_path, content, words):
    override = f"search.portfolio_file={tmp_path / 'absent.json'}" if content is None else _own(tmp_path, content)
    spec = spec_of("model=minilm_l6", override)
    with pytest.raises(ConfigError) as err:
        first_points(spec, registry=None)
    assert err.value.key == "search.portfolio_file" and words in err.value.message
    assert "hpo/study/portfolio.json" in err.value.message or "drop search.portfolio_file" in err.value.message


def test_a_resume_goes_on_when_its_portfolio_file_is_gone(tmp_path):
    """Its first trials were queued when it began; a file deleted since is no reason to refuse the resume."""
    spec = spec_of("model=minilm_l6", f"search.portfolio_file={tmp_path / 'gone.json'}")
    assert first_points(spec, registry=None, resuming=True) == []
