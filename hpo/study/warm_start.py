"""Where a new study starts: another study's best configurations (a warm start) or the space's midpoint."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optuna.distributions import BaseDistribution

from hpo._optuna import contains
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from hpo.stores.registry import Registry
from hpo.study.portfolio import portfolio_points
from trainers.objective import Objective


def first_points(spec: StudySpec, registry: Registry, resuming: bool = False) -> list[dict[str, Any]]:
    """What a new study evaluates before its sampler's own draws: the warm start's configs, or else the space's
    midpoint (each searched model's) when ``search.first_trial`` is ``midpoint``, or the suite's learned portfolio
    when it is ``portfolio``. ``resuming``: a warm start's source or a portfolio file deleted since is no reason to
    refuse the resume."""
    if spec.warm_start.source is not None:
        if resuming and registry.get(spec.warm_start.source) is None:
            return []
        return warm_start_points(spec, registry)
    if spec.study.first_trial == "portfolio":
        own = spec.study.portfolio_file
        if resuming and own is not None and not own.is_file():
            return []  # as with a deleted warm-start source: the first trials were queued when the study began
        return portfolio_points(spec)
    return spec.space.midpoints() if spec.study.first_trial == "midpoint" else []


def untried(points: list[dict[str, Any]], tried: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` less those a trial already evaluated (``tried``: its params), so that a resumed study does
    not run its first trials twice. Floats compare within rounding, as Optuna's ``skip_if_exists`` does."""
    tried = list(tried)
    return [p for p in points if not any(all(_same(v, t.get(k)) for k, v in p.items()) for t in tried)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def warm_start_points(spec: StudySpec, registry: Registry) -> list[dict[str, Any]]:
    """The source study's best distinct configs that lie inside this study's space, best first.

    Ranked by each trial's best epoch (as hpo ranks trials) over its completed and pruned trials.
    """
    source_name = spec.warm_start.source
    if source_name is None:
        return []
    source = registry.get(source_name)
    if source is None:
        known = [s.name for s in registry.list_studies()]
        raise ConfigError("warm_start.from", f"no study named {source_name!r} (studies: {known or 'none'})")
    finished = [t for t in registry.trials(source.name) if t.state.has_result]
    points: list[dict[str, Any]] = []
    for trial in Objective(source.metric, source.mode).ranked(finished, key=lambda t: t.best_metric):
        wanted = spec.space.applicable(trial.params.get("method"), trial.params.get("model"))
        point = {name: trial.params.get(name) for name in wanted}
        if point not in points and all(_inside(spec.space.distributions[n], v) for n, v in point.items()):
            points.append(point)
        if len(points) == spec.warm_start.top_k:
            break
    return points


def _inside(distribution: BaseDistribution, value: Any) -> bool:
    if value is None:
        return False
    try:
        return contains(distribution, value)
    except (ValueError, TypeError):
        return False
