"""Turning the composed Hydra config into a checked :class:`~hpo.config.spec.StudySpec`, before anything runs.

Every check raises :class:`~hpo.errors.ConfigError` naming the key and the fix, so a typo costs a second,
not a cluster start. Checking writes nothing: not a folder, not a model. Example::

    spec = build_spec(compose(["experiment=sst2_minilm", "study.num_samples=2"]))
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpo.config import spec as s
from hpo.config.dimension_overrides import kind_changes
from hpo.config.model_check import check_input_length, resolve_model
from hpo.config.model_choice import model_choices, with_choice_configs
from hpo.config.resolvers import CONFIG_DIR, register
from hpo.config.scheduler_rules import check_scheduler
from hpo.config.search_space import IMAGE_ONLY, SearchSpace
from hpo.config.sections import (
    SEARCH_SETTINGS,
    as_dict,
    as_study_config,
    cluster_spec,
    confirm_spec,
    data_spec,
    distill_spec,
    get_key,
    number,
    resources_spec,
    search_settings,
    storage_spec,
    tracking_spec,
)
from hpo.errors import ConfigError
from hpo.secrets import redact, restore
from trainers.config import COST_METRICS, LOWER_IS_BETTER, POOLINGS, REGRESSION_LOSSES, TrainConfig
from trainers.objective import Objective
from trainers.tasks import DEFAULT_TASK, TASKS, SourceError, TaskInfo, load_task
from trainers.tasks.custom import resolve_function, search_path_of

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TRAINER_KEYS = ("max_epochs", "max_length", "eval_batch_size", "grad_clip", "early_stopping_patience",
                 "min_micro_batch_size")
_BUILT_IN_TARGETS = ("optuna.samplers.", "ray.tune.schedulers.", "hpo.study.per_model_asha.")
ALLOWED_TARGETS_ENV = "HPO_ALLOWED_TARGETS"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config, as ``hpo sweep OVERRIDES`` would see it (for tests and notebooks)."""
    return _compose_plain(with_kind_changes(overrides))


def with_kind_changes(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with a dimension given a mapping of another kind replaced (:mod:`.dimension_overrides`)."""
    return kind_changes(overrides, _compose_plain)


def _compose_plain(overrides: Sequence[str]) -> DictConfig:
    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def stored_config(config_yaml: str, given: Sequence[str] = ()) -> DictConfig:
    """A study's config as the registry stored it, completed with any setting added to conf/config.yaml since
    (at its default), so a study recorded by an older hpo resumes with a newer one. Masked passwords are
    restored from the ``given`` URLs (the registry URL its user passed) where user, host and port match."""
    root = as_study_config(OmegaConf.load(CONFIG_DIR / "config.yaml"))
    for key in ("defaults", "hydra"):
        root.pop(key, None)
    stored = _unmask(OmegaConf.to_container(OmegaConf.create(config_yaml)), list(given))
    return as_study_config(OmegaConf.merge(root, OmegaConf.create(stored)))


def _unmask(value: Any, given: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _unmask(v, given) for k, v in value.items()}
    return restore(value, given) if isinstance(value, str) else value


def stored_storage(record, given: Sequence[str] = ()) -> s.StorageSpec:
    """Where a recorded study keeps its stores (MLflow, Optuna, checkpoints), as its driver resolved them."""
    cfg = stored_config(record.config_yaml, given)
    return storage_spec(cfg, record.name)


def build_spec(cfg: DictConfig) -> s.StudySpec:
    """Checks ``cfg`` in the order a user would fix it: study, storage, model, data, search, trainer, rest."""
    cfg = with_choice_configs(cfg)
    try:  # what the registry keeps and MLflow shows: credentials masked (hpo.secrets)
        config_yaml = OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=True))))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        raise ConfigError(str(key), str(err).splitlines()[0]) from None

    info = _task(cfg)
    study = _study(cfg, info)
    storage = storage_spec(cfg, study.name)
    if info.user_function:  # the function brings its own model and data; the space is the user's own names
        model, pooling, data, choices = s.ModelSpec("", 0, None), "cls", None, {}
        function = str(get_key(cfg, "task.fn"))
        try:
            resolve_function(function)
        except SourceError as err:
            raise ConfigError(err.key, err.message) from None
        space = _space(cfg, 0, {}, open_names=True)
        user: dict[str, Any] = {"function": function, "function_path": search_path_of(function) or ""}
    else:
        model = resolve_model(str(get_key(cfg, "model.name_or_path")),
                              OmegaConf.select(cfg, "model.build_if_missing"), info.name)
        pooling = OmegaConf.select(cfg, "model.pooling", default="cls")
        if pooling not in POOLINGS:
            raise ConfigError("model.pooling", f"must be one of {list(POOLINGS)}, got {pooling!r}")
        data = data_spec(cfg, load_task(info.name))
        choices = model_choices(cfg, info.name)
        space = _space(cfg, model.num_layers, {name: (c.model.num_layers, c.prior) for name, c in choices.items()})
        _check_space_fits(space, info, data)
        check_input_length(number(cfg, "trainer.max_length", minimum=8, integer=True),
                           {"model.name_or_path": model} | {f"search.model={n}": c.model for n, c in choices.items()})
        user = {"cv_folds": data.cv_folds or 0}
    trainer = dataclasses.replace(_trainer(cfg, model, pooling, study, space, info), **user,
                                  regression_loss=str(OmegaConf.select(cfg, "task.loss", default="mse")))

    warm_from = get_key(cfg, "warm_start.from")
    if warm_from is not None and warm_from == study.name:
        raise ConfigError("warm_start.from", "a study cannot warm-start from itself; name another study")
    return s.StudySpec(
        study=study, storage=storage, model=model, data=data, space=space, trainer=trainer,
        lease=s.LeaseSpec(heartbeat_s=number(cfg, "registry.heartbeat_s", minimum=0.1),
                          stale_after_s=number(cfg, "registry.stale_after_s", minimum=1)),
        resources=resources_spec(cfg, data),
        cluster=cluster_spec(cfg),
        sampler=_component(cfg, "sampler", space), scheduler=_component(cfg, "scheduler", space),
        warm_start=s.WarmStartSpec(source=warm_from, top_k=number(cfg, "warm_start.top_k", minimum=1, integer=True)),
        confirm=confirm_spec(cfg),
        register_best=bool(get_key(cfg, "tracking.register_best")),
        tracking=tracking_spec(cfg),
        config_yaml=config_yaml, models=choices, task=info.name,
        distill=distill_spec(cfg, info, set(space.distributions) | set(space.fixed)),
    )


def _check_space_fits(space: SearchSpace, task: TaskInfo, data: s.DataSpec) -> None:
    """Refuses, by key, what the task cannot do with the searched or fixed hyperparameters."""
    images = task.name == "image_classification"
    if task.regression and "balanced" in space.values_of("class_weights"):
        raise ConfigError("search.class_weights", f"task={task.name} has no classes to weigh; set it to none")
    named = set(space.distributions) | set(space.fixed)
    if not images and (augmenting := sorted(named & set(IMAGE_ONLY))):
        raise ConfigError(f"search.{augmenting[0]}", "augmentation is for task=image_classification; remove it "
                                                     f"(~search.{augmenting[0]})")
    if images and "lora" in space.values_of("method"):
        raise ConfigError("search.method", "lora adapts transformer layers; an image backbone trains full or freeze")
    if images and data.cv_folds:
        raise ConfigError("data.cv_folds", "cross-validation is not built for task=image_classification yet; use a "
                                           "validation folder (data.validation_path)")


def _task(cfg: DictConfig) -> TaskInfo:
    """``task.name`` (a study stored before tasks existed is a text classification)."""
    name = str(OmegaConf.select(cfg, "task.name", default=DEFAULT_TASK))
    if name not in TASKS:
        raise ConfigError("task", f"unknown task {name!r}; choose task= one of {sorted(TASKS)}")
    if (loss := OmegaConf.select(cfg, "task.loss")) is not None and loss not in REGRESSION_LOSSES:
        raise ConfigError("task.loss", f"must be one of {list(REGRESSION_LOSSES)}, got {loss!r}")
    return TASKS[name]


def _study(cfg: DictConfig, task: TaskInfo) -> s.StudySettings:
    name = str(get_key(cfg, "study.name"))
    if not _STUDY_NAME.match(name):
        raise ConfigError("study.name", f"{name!r} must be letters, digits, '_', '.' or '-' (used in paths and MLflow)")
    objectives = _objectives(cfg, task)
    metric, mode = get_key(cfg, "study.metric"), get_key(cfg, "study.mode")
    if objectives:
        metric, mode = objectives[0].metric, objectives[0].mode
    if not metric:
        raise ConfigError("study.metric", "name the metric the study optimizes: one your task.fn reports, e.g. "
                                          "study.metric=val_acc study.mode=max")
    if task.metrics and metric not in task.metrics:
        raise ConfigError("study.metric", f"{metric!r} is not reported by task={task.name}; choose one of "
                                          f"{list(task.metrics)}")
    if mode not in ("min", "max"):
        raise ConfigError("study.mode", f"must be 'min' or 'max', got {mode!r}")
    if (metric in LOWER_IS_BETTER) != (mode == "min"):
        raise ConfigError("study.mode", f"{metric} should be "
                                        f"{'minimized' if metric in LOWER_IS_BETTER else 'maximized'}")
    return s.StudySettings(
        name=name, objective=Objective(metric, mode),
        num_samples=number(cfg, "study.num_samples", minimum=1, integer=True),
        max_concurrent=number(cfg, "study.max_concurrent", minimum=1, integer=True, optional=True),
        seed=number(cfg, "study.seed", minimum=0, integer=True),
        stop=s.StopRules(
            time_budget_s=number(cfg, "study.time_budget_s", minimum=1, optional=True),
            epoch_budget=number(cfg, "study.epoch_budget", minimum=1, integer=True, optional=True),
            target=number(cfg, "study.stop.target", minimum=-1e30, optional=True),
            patience=number(cfg, "study.stop.patience", minimum=1, integer=True, optional=True),
            min_delta=number(cfg, "study.stop.min_delta", minimum=0),
        ),
        extra_objectives=tuple(objectives[1:]), **search_settings(cfg, task),
    )


def _space(cfg: DictConfig, num_layers: int, models: dict[str, tuple[int, dict]],
           open_names: bool = False) -> SearchSpace:
    search = get_key(cfg, "search")
    if not isinstance(search, DictConfig):
        raise ConfigError("search", "must be a mapping of hyperparameter -> range, choices or value")
    node = {k: v for k, v in as_dict(search, "search").items() if k not in SEARCH_SETTINGS}
    if OmegaConf.select(cfg, "distill.teacher") is not None:  # a teacher's settings are searched unless fixed
        node = as_dict(get_key(cfg, "distill.search"), "distill.search") | node
    return SearchSpace.from_config(node, num_layers, models, open_names=open_names)


def _objectives(cfg: DictConfig, task: TaskInfo) -> list[Objective]:
    """``study.objectives: [val_accuracy:max, latency_ms:min]``: a multi-objective study (hpo.ranking); the first
    replaces study.metric and study.mode. Empty when unset."""
    given = get_key(cfg, "study.objectives")
    if given is None:
        return []
    known = (*task.metrics, *COST_METRICS)
    hint = "write a list of metric:mode, e.g. [val_accuracy:max, latency_ms:min]"
    if isinstance(given, str) or len(given) < 2:
        raise ConfigError("study.objectives", f"needs at least two objectives; {hint}")
    objectives = []
    for entry in given:
        name, _, mode = str(entry).partition(":")
        if (task.metrics and name not in known) or mode not in ("min", "max"):
            raise ConfigError("study.objectives", f"{entry!r}: {hint}; metrics are {list(known)}")
        if (name in COST_METRICS or name in LOWER_IS_BETTER) and mode != "min":
            raise ConfigError("study.objectives", f"{name} is a cost: it should be minimized ({name}:min)")
        objectives.append(Objective(name, mode))
    if task.metrics and objectives[0].metric not in task.metrics:
        raise ConfigError("study.objectives", f"the first objective is what ASHA schedules on and the best trial is "
                                              f"ranked by: a validation metric, not {objectives[0].metric}")
    if len({o.metric for o in objectives}) < len(objectives):
        raise ConfigError("study.objectives", "lists a metric twice")
    return objectives


def _trainer(cfg: DictConfig, model: s.ModelSpec, pooling: str, study: s.StudySettings,
             space: SearchSpace, task: TaskInfo) -> TrainConfig:
    number(cfg, "trainer.max_epochs", minimum=1, integer=True)
    number(cfg, "trainer.max_length", minimum=8, integer=True)
    number(cfg, "trainer.eval_batch_size", minimum=1, integer=True)
    number(cfg, "trainer.min_micro_batch_size", minimum=1, integer=True)
    number(cfg, "trainer.early_stopping_patience", minimum=1, integer=True, optional=True)
    fixed = {key: get_key(cfg, f"trainer.{key}") for key in _TRAINER_KEYS}
    if task.user_function:  # its fixed values are the function's params, not trainer settings
        fixed["params"] = dict(space.fixed)
    else:
        fixed |= space.fixed
    try:
        return TrainConfig.from_mapping(fixed | {
            "model_name_or_path": model.name_or_path, "pooling": pooling, "metric": study.objective.metric,
            "mode": study.objective.mode, "seed": study.seed})
    except (TypeError, ValueError) as err:
        raise ConfigError("trainer", str(err)) from None


def _component(cfg: DictConfig, group: str, space: SearchSpace) -> s.Component:
    """The sampler or scheduler as a recipe, built once here so a bad ``_target_`` or argument fails before
    Ray starts (building one writes nothing); the study builds its own where it uses it."""
    node = get_key(cfg, group)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(group, f"needs a `_target_`; pick one of the {group}/ configs, e.g. {group}=tpe")
    kwargs = {k: v for k, v in as_dict(node, group).items() if k != "_target_"}
    if group == "sampler" and "search_space" in kwargs:
        kwargs["search_space"] = space.grid_space()
    component = s.Component(str(node["_target_"]), kwargs)
    if group == "scheduler":
        check_scheduler(component.target, kwargs)
    if not component.target.startswith(allowed_targets()):
        raise ConfigError(f"{group}._target_", f"{component.target!r} is not an allowed {group}; hpo builds Optuna "
                                               "samplers and Ray Tune schedulers, and targets under the prefixes in "
                                               f"${ALLOWED_TARGETS_ENV} (comma-separated) if you set it")
    try:
        component.build()
    except Exception as err:  # noqa: BLE001 (hydra wraps import and argument errors alike)
        raise ConfigError(group, f"cannot build {component.target}: {str(err).splitlines()[0]}") from None
    return component


def allowed_targets() -> tuple[str, ...]:
    """Where a config's ``_target_`` may point: a config stored in a shared registry must not make `hpo resume`
    call arbitrary code, so the list comes from this machine's environment, never from a config."""
    extra = [p.strip() for p in os.environ.get(ALLOWED_TARGETS_ENV, "").split(",") if p.strip()]
    return (*_BUILT_IN_TARGETS, *extra)


def with_trainer(spec: s.StudySpec, **changes: Any) -> s.StudySpec:
    """``spec`` with some trainer settings replaced (benchmarks and tests vary one at a time)."""
    return dataclasses.replace(spec, trainer=dataclasses.replace(spec.trainer, **changes))
