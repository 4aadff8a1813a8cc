"""The search space: declared in YAML (``conf/search/``), translated to Optuna distributions.

Example::

    >>> space = SearchSpace.from_config(
    ...     {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    ...      "freeze_depth": {"low": 0, "high": "half"}, "dropout": 0.1},
    ...     num_layers=6)
    >>> space.distributions["freeze_depth"]               # `half`: at most half the blocks frozen; `auto`: all
    IntDistribution(high=3, log=False, low=0, step=1)
    >>> space.fixed
    {'dropout': 0.1}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import ConfigError
from trainers.config import CLASS_WEIGHTS, METHODS

# What a trial may sample, with the values that make sense for each.
_BOUNDS: dict[str, tuple[type, float, float, str]] = {
    "learning_rate": (float, 0.0, 1.0, "a small positive number such as 3e-5"),
    "batch_size": (int, 1, math.inf, "a positive integer"),
    "freeze_depth": (int, 0, math.inf, "0 (full fine-tuning) up to the number of encoder blocks"),
    "weight_decay": (float, 0.0, math.inf, ">= 0"),
    "dropout": (float, 0.0, 0.999, "in [0, 1)"),
    "layer_lr_decay": (float, 1e-9, 1.0, "in (0, 1]; 1 = the same LR for every layer"),
    "warmup_ratio": (float, 0.0, 1.0, "in [0, 1]"),
    "lora_rank": (int, 1, 1024, "a positive integer such as 8 (the adapters' rank)"),
    "lora_alpha": (float, 1e-9, math.inf, "> 0, e.g. twice the rank (the adapters' scale is alpha / rank)"),
    "lora_learning_rate": (float, 0.0, 1.0, "a small positive number such as 5e-4 (LoRA's own LR)"),
    "aug_crop_scale": (float, 0.05, 1.0, "in [0.05, 1]: the smallest share of an image a random crop keeps"),
    "aug_magnitude": (float, 0.0, 10.0, "in [0, 10] (RandAugment's scale)"),
    "mixup_alpha": (float, 0.0, 10.0, ">= 0, e.g. 0.2 (0 = no mixup)"),
    "distill_temperature": (float, 1e-3, 100.0, "> 0, e.g. 1 to 8 (softens the teacher's classes)"),
    "distill_alpha": (float, 0.0, 1.0, "in [0, 1]: the labels' share of the loss, the teacher's the rest"),
}
IMAGE_ONLY = ("aug_crop_scale", "aug_flip", "aug_magnitude", "mixup_alpha")  # augmentation: images only
# Hyperparameters that take one of a few names (a categorical, or fixed), never a range.
_NAMED: dict[str, tuple] = {"class_weights": CLASS_WEIGHTS, "method": METHODS, "aug_flip": (True, False),
                            "pretrained": (True, False)}
# Hyperparameters that only some fine-tuning methods use: sampled only for trials of those (a conditional space).
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "learning_rate": ("full", "freeze"), "freeze_depth": ("freeze",),
    "lora_rank": ("lora",), "lora_alpha": ("lora",), "lora_learning_rate": ("lora",),
}
DEFAULT_METHOD = "freeze"  # freeze_depth decides (0 = full fine-tuning), as before methods were searchable
MODEL = "model"  # the pretrained model as a dimension (hpo.config.model_choice): choices are model/ config names
HYPERPARAMETERS = (*_BOUNDS, *_NAMED, MODEL)
_PER_MODEL = "."  # Optuna's name for a dimension whose range depends on the model: learning_rate.minilm_l3


def trainer_name(name: str) -> str:
    """The trainer setting an Optuna parameter sets: ``learning_rate.minilm_l3`` -> ``learning_rate``."""
    return name.split(_PER_MODEL, 1)[0]
_RANGE_KEYS = {"low", "high", "log", "step", "type", "grid"}


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, list] = field(default_factory=dict)
    conditional: bool = True  # fine-tuning's conditional space (method -> what it uses); False: task=custom's own

    @classmethod
    def from_config(cls, node: Mapping[str, Any], num_layers: int,
                    models: Mapping[str, tuple[int, Mapping[str, Any]]] | None = None,
                    open_names: bool = False) -> SearchSpace:
        """``models``: when the model is searched, each choice's number of blocks and prior (the ranges that
        replace ``node``'s for its trials). A range that differs between models is one Optuna parameter per
        model (``freeze_depth.minilm_l3``), so the sampler never mixes one model's evidence into another's.
        ``open_names``: any names, the user's own (``task=custom``), with no fine-tuning meaning attached.

        >>> space = SearchSpace.from_config({"model": {"choices": ["big", "small"]},
        ...     "freeze_depth": {"low": 0, "high": "half"}, "dropout": {"low": 0.0, "high": 0.2}},
        ...     num_layers=6, models={"big": (6, {}), "small": (3, {})})
        >>> sorted(space.distributions)
        ['dropout', 'freeze_depth.big', 'freeze_depth.small', 'model']
        """
        if models:
            return cls._per_model(node, num_layers, models)
        if MODEL in node and not open_names:
            raise ConfigError("search.model", "the model choices were not read; give {choices: [model configs]}")
        distributions, fixed, grids = {}, {}, {}
        for name, spec in node.items():
            key = f"search.{name}"
            if name not in HYPERPARAMETERS and not open_names:
                raise ConfigError(key, f"unknown hyperparameter; searchable ones are {list(HYPERPARAMETERS)}")
            if isinstance(spec, Mapping):
                distributions[name], grid = _distribution(key, name, dict(spec), num_layers)
                if grid is not None:
                    grids[name] = grid
            else:
                fixed[name] = _checked_value(key, name, spec, num_layers)
        if not distributions:
            hint = ("declare the function's own, e.g. '+search.lr={low:0.001,high:0.1,log:true}'" if open_names
                    else "make one a range")
            raise ConfigError("search", f"nothing to search: no hyperparameter is a range or choices; {hint}")
        return cls(distributions, fixed, grids, conditional=not open_names)

    @classmethod
    def _per_model(cls, node: Mapping[str, Any], num_layers: int,
                   models: Mapping[str, tuple[int, Mapping[str, Any]]]) -> SearchSpace:
        base = {k: v for k, v in node.items() if k != MODEL}
        spaces = {}
        for name, (blocks, prior) in models.items():
            if any(not isinstance(v, Mapping) for v in prior.values()):
                raise ConfigError(f"model_choices.{name}.search", "a model's prior takes ranges or choices only")
            try:
                spaces[name] = cls.from_config({**base, **prior}, blocks)
            except ConfigError as err:
                raise ConfigError(f"{err.key} (for model {name})", err.message) from None
        first = next(iter(spaces.values()))
        distributions: dict[str, BaseDistribution] = {MODEL: CategoricalDistribution(list(models))}
        for dim in dict.fromkeys(d for space in spaces.values() for d in space.distributions):
            same = all(space.distributions.get(dim) == first.distributions.get(dim) for space in spaces.values())
            for model, space in spaces.items():
                if dim in space.distributions:
                    distributions[dim if same else f"{dim}{_PER_MODEL}{model}"] = space.distributions[dim]
        return cls(distributions, dict(first.fixed))  # no grids: sampler=grid refuses a conditional space

    def applicable(self, method: str | None, model: str | None = None) -> list[str]:
        """The searched hyperparameters a trial of ``method`` (and ``model``) uses (all when the space has no
        method)."""
        if not self.conditional:
            return list(self.distributions)
        method = method or self.fixed.get("method", DEFAULT_METHOD)
        return [n for n in self.distributions
                if n in ("method", MODEL) or (method in _ONLY_FOR.get(trainer_name(n), METHODS)
                                              and n.partition(_PER_MODEL)[2] in ("", model))]

    def sample(self, trial) -> dict[str, Any]:
        """Samples ``trial`` (an Optuna trial from ``study.ask()``): the method first when it is searched, then what
        that method uses, so LoRA's rank never reaches a full fine-tuning run. Enqueued values come back as given.

        >>> import optuna
        >>> space = SearchSpace.from_config({"method": {"choices": ["freeze", "lora"]},
        ...     "learning_rate": {"low": 1e-5, "high": 1e-4}, "lora_rank": {"low": 4, "high": 16}}, num_layers=2)
        >>> study = optuna.create_study()
        >>> study.enqueue_trial({"method": "lora", "lora_rank": 8})
        >>> space.sample(study.ask())
        {'method': 'lora', 'lora_rank': 8}
        """
        params: dict[str, Any] = {}
        for first in (MODEL, "method") if self.conditional else ():
            if first in self.distributions:
                params[first] = _suggest(trial, first, self.distributions[first])
        for name in self.applicable(params.get("method"), params.get(MODEL)):
            if name not in params:
                params[name] = _suggest(trial, name, self.distributions[name])
        return params

    def grid_space(self) -> dict[str, list]:
        """The finite value lists that ``optuna.samplers.GridSampler`` needs, one per searched dimension."""
        if conditional := [d for d in (MODEL, "method") if d in self.distributions and self.conditional]:
            raise ConfigError(f"search.{conditional[0]}", "sampler=grid needs every trial to sample every dimension, "
                                                          "but this one decides which others a trial samples; use "
                                                          "sampler=tpe or random, or fix it")
        space = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                space[name] = list(dist.choices)
            elif name in self.grids:
                space[name] = self.grids[name]
            else:
                raise ConfigError(
                    f"search.{name}", "sampler=grid needs a finite set: give `grid: [v1, v2, ...]` or `choices`"
                )
        return space

    def midpoint(self, model: str | None = None) -> dict[str, Any]:
        """The centre of the space (of ``model``'s part of it, when given): a first trial that needs no luck (Syne
        Tune's default first config).

        Log ranges take their geometric mean, a categorical its middle choice::

            >>> SearchSpace.from_config({"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
            ...     "batch_size": {"choices": [16, 32, 64]}, "freeze_depth": {"low": 0, "high": 3}}, 6).midpoint()
            {'learning_rate': 0.0001, 'batch_size': 32, 'freeze_depth': 2}
        """
        method = _centre(self.distributions["method"]) if "method" in self.distributions else None
        if model is None and MODEL in self.distributions:
            model = _centre(self.distributions[MODEL])
        return {name: model if name == MODEL else _centre(self.distributions[name])
                for name in self.applicable(method, model)}

    def midpoints(self) -> list[dict[str, Any]]:
        """What ``search.first_trial=midpoint`` queues: the centre, or each model's centre when the model is searched,
        so every model is trained once before the sampler chooses among them (a costly model a sampler's few random
        first draws miss is otherwise never tried)."""
        if MODEL not in self.distributions:
            return [self.midpoint()]
        models = self.distributions[MODEL]
        assert isinstance(models, CategoricalDistribution)
        return [self.midpoint(str(model)) for model in models.choices]

    def values_of(self, name: str) -> list[Any]:
        """The values a trial may get for ``name``: its choices, its fixed value, or none (not in the space, or a
        range)."""
        dist = self.distributions.get(name)
        if isinstance(dist, CategoricalDistribution):
            return list(dist.choices)
        return [self.fixed[name]] if name in self.fixed else []

    def describe(self) -> dict[str, str]:
        """Human-readable form, for the study's MLflow run."""
        searched = {k: repr(v) for k, v in self.distributions.items()}
        return searched | {k: f"fixed={v!r}" for k, v in self.fixed.items()}


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial``'s value for ``dist`` through the public ``suggest_*`` API (what enqueued trials answer)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution), f"{name}: {dist!r} is none of the kinds a config makes"
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _centre(dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[(len(dist.choices) - 1) // 2]
    assert isinstance(dist, IntDistribution | FloatDistribution)
    low, high = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
    value = math.exp((low + high) / 2) if dist.log else (low + high) / 2
    if isinstance(dist, IntDistribution):  # on the step grid, halves rounded up
        return dist.low + math.floor((value - dist.low) / dist.step + 0.5) * dist.step
    if dist.step:
        return dist.low + round((value - dist.low) / dist.step) * dist.step
    return float(f"{value:.6g}")  # a readable first config: 7.74597e-05, not 7.745966692414834e-05


def _distribution(key: str, name: str, spec: dict, num_layers: int) -> tuple[BaseDistribution, list | None]:
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            raise ConfigError(key, f"a categorical takes only `choices`, not {sorted(extra)}")
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(key + ".choices", "must be a non-empty list")
        return CategoricalDistribution([_checked_value(key + ".choices", name, c, num_layers) for c in choices]), None

    if name in _NAMED:
        raise ConfigError(key, f"takes a name, not a range: write {{choices: {list(_NAMED[name])}}} or one of them")
    unknown = set(spec) - _RANGE_KEYS
    if unknown:
        raise ConfigError(key, f"unknown field(s) {sorted(unknown)}; a range takes {sorted(_RANGE_KEYS)}")
    for bound in ("low", "high"):
        if bound not in spec:
            raise ConfigError(key, f"missing `{bound}`; write {{low: ..., high: ...}} or {{choices: [...]}}")
    spec["high"] = {"auto": num_layers, "half": num_layers // 2}.get(spec["high"], spec["high"])
    low = _checked_value(key + ".low", name, spec["low"], num_layers)
    high = _checked_value(key + ".high", name, spec["high"], num_layers)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
        raise ConfigError(key, f"a range takes numbers, got {low!r}..{high!r}; for names write {{choices: [...]}}")
    if low > high:
        raise ConfigError(key, f"low ({low}) is above high ({high})")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and low <= 0:
        raise ConfigError(key + ".low", f"must be > 0 for a log-uniform range, got {low}")
    # A custom task's own name is an int range when both bounds are ints (as the YAML comment in search/ says).
    default = _BOUNDS[name][0] is int if name in _BOUNDS else isinstance(low, int) and isinstance(high, int)
    kind = spec.get("type") or ("int" if default else "float")
    if kind not in ("int", "float"):
        raise ConfigError(key + ".type", f"must be int or float, got {kind!r}")
    grid = spec.get("grid")
    if grid is not None:
        grid = [_checked_value(key + ".grid", name, v, num_layers) for v in grid]
        if any(not low <= v <= high for v in grid):
            raise ConfigError(key + ".grid", f"every value must lie in [{low}, {high}]")
    if kind == "int":
        if int(low) != low or int(high) != high:
            raise ConfigError(key, f"an int range needs whole bounds, got {low}..{high}")
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1)), grid
    return FloatDistribution(float(low), float(high), log=log, step=step), grid


def _checked_value(key: str, name: str, value: Any, num_layers: int) -> Any:
    if name not in HYPERPARAMETERS:  # task=custom's own name: its function checks its values
        return value
    if name in _NAMED:
        if value not in _NAMED[name]:
            raise ConfigError(key, f"must be one of {list(_NAMED[name])}, got {value!r}")
        return value
    kind, low, high, hint = _BOUNDS[name]
    if name == "freeze_depth":
        high = num_layers
        hint = f"0..{num_layers} (this model has {num_layers} encoder blocks; `high: auto` = {num_layers}, " \
               f"`high: half` = {num_layers // 2})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number ({hint}), got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(key, f"must be an integer ({hint}), got {value!r}")
    if not low <= value <= high or (name == "learning_rate" and value <= 0):
        raise ConfigError(key, f"{value!r} is out of range: {hint}")
    return int(value) if kind is int else value
