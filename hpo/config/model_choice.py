"""The pretrained model as a search dimension: ``search.model: {choices: [minilm_l6, minilm_l3]}``.

Each choice names a config of the ``model/`` group. Its ``search:`` block (optional) is that model's prior: the
ranges that replace the study's for trials of that model (a smaller encoder takes a higher learning rate; its
freeze depth is bounded by its own blocks). The choices' configs are copied into the study's config under
``model_choices`` when it is first checked, so a resumed study uses the models it started with.

A trial's inputs then depend on its model: its settings (:func:`trial_settings`: the model's folder and pooling)
and its prepared data (:func:`trial_data`: one :class:`~trainers.PreparedData` per choice, keyed by name).

Example::

    >>> from hpo.config.spec import ModelChoice, ModelSpec
    >>> from trainers import TrainConfig
    >>> choice = ModelChoice(ModelSpec("/models/small", 3, None), "mean", {})
    >>> trial_settings(TrainConfig(), {"model": "small", "learning_rate": 1e-4}, {"small": choice}).pooling
    'mean'
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from hpo.config.model_check import resolve_model
from hpo.config.resolvers import CONFIG_DIR
from hpo.config.search_space import HYPERPARAMETERS, MODEL, trainer_name
from hpo.config.sections import as_dict
from hpo.config.spec import ModelChoice, StudySpec
from hpo.errors import ConfigError
from trainers import TrainConfig
from trainers.config import POOLINGS
from trainers.tasks import DEFAULT_TASK

CHOICES_KEY = "model_choices"
# The task's prepared data, opaque to hpo (None: the task reads its own), or each model choice's keyed by name.
StudyData = Any


def with_choice_configs(cfg: DictConfig) -> DictConfig:
    """``cfg`` with each ``search.model`` choice's ``model/<name>.yaml`` copied under ``model_choices`` (those
    already there, as a stored study has them, are kept)."""
    names = _choice_names(cfg)
    if not names:
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        if cfg.get(CHOICES_KEY) is None:
            cfg[CHOICES_KEY] = {}
        for name in names:
            if name not in cfg[CHOICES_KEY]:
                path = CONFIG_DIR / "model" / f"{name}.yaml"
                if not path.is_file():
                    known = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
                    raise ConfigError("search.model.choices", f"{name!r} is not a model config; the model/ "
                                                              f"group has {known} (or add conf/model/{name}.yaml)")
                cfg[CHOICES_KEY][name] = OmegaConf.load(path)
    return cfg


def model_choices(cfg: DictConfig, task: str = DEFAULT_TASK) -> dict[str, ModelChoice]:
    """The checked choices of ``search.model`` (empty when the model is not searched)."""
    choices = {}
    for name in _choice_names(cfg):
        key = f"{CHOICES_KEY}.{name}"
        node = cfg[CHOICES_KEY][name]
        try:
            values = as_dict(node, key)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 (an interpolation in the model's config)
            raise ConfigError(key, str(err).splitlines()[0]) from None
        if not values.get("name_or_path"):
            raise ConfigError(f"{key}.name_or_path", "missing: the model's folder or hub name")
        if values.get("pooling", "cls") not in POOLINGS:
            raise ConfigError(f"{key}.pooling", f"must be one of {list(POOLINGS)}, got {values['pooling']!r}")
        prior = values.get("search") or {}
        if not isinstance(prior, dict):
            raise ConfigError(f"{key}.search", "must be a mapping of hyperparameter -> range (this model's prior)")
        try:
            model = resolve_model(str(values["name_or_path"]), values.get("build_if_missing"), task)
        except ConfigError as err:  # named by the choice, not by model.*, which the user did not write
            raise ConfigError(f"search.model.choices ({name})", f"{err.key}: {err.message}") from None
        choices[name] = ModelChoice(model, values.get("pooling", "cls"), prior)
    return choices


def trial_settings(trainer: TrainConfig, params: Mapping[str, Any], choices: Mapping[str, ModelChoice],
                   **changes: Any) -> TrainConfig:
    """``trainer`` with a trial's sampled ``params`` (under their trainer names) and its model's folder and
    pooling; ``changes`` on top (seed, threads...)."""
    if trainer.function:  # task=custom: every sampled value is the user's function's own
        return dataclasses.replace(trainer, params={**trainer.params, **params}, **changes)
    values = {trainer_name(k): v for k, v in params.items() if trainer_name(k) in HYPERPARAMETERS and k != MODEL}
    if (name := params.get(MODEL)) is not None:
        values |= {"model_name_or_path": choices[name].model.name_or_path, "pooling": choices[name].pooling}
    return dataclasses.replace(trainer, **values, **changes)


def trial_data(data: StudyData, params: Mapping[str, Any]) -> Any:
    """A trial's prepared data: its model's, when the study searches the model."""
    return data[params[MODEL]] if isinstance(data, Mapping) else data


def with_models_of(spec: StudySpec, trials: Iterable[Mapping[str, Any]]) -> StudySpec:
    """``spec`` keeping only the model choices these trials' ``params`` used, so a command that needs a few trials'
    data (refit, ensemble) prepares it for their models alone."""
    used = {params.get(MODEL) for params in trials}
    return dataclasses.replace(spec, models={n: c for n, c in spec.models.items() if n in used}) if spec.models \
        else spec


def rows_of(data: StudyData) -> Any:
    """The study's rows under any one model's tokens (the rows, labels and splits are the same for every model)."""
    return next(iter(data.values())) if isinstance(data, Mapping) else data


def _choice_names(cfg: DictConfig) -> list[str]:
    given = OmegaConf.select(cfg, "search.model")
    if given is None:
        return []
    if not isinstance(given, DictConfig) or set(given) != {"choices"} or not given.choices:
        raise ConfigError("search.model", "takes {choices: [model configs]}, e.g. {choices: [minilm_l6, minilm_l3]};"
                                          " for one model use model=NAME")
    names = [str(n) for n in given.choices]
    if len(set(names)) < len(names):
        raise ConfigError("search.model.choices", "names a model twice")
    return names
