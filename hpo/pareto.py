"""The Pareto front of a multi-objective study (``study.objectives``): the trials no other trial beats on every
objective at once, each objective read at the trial's best epoch of the first.

Only completed trials count: a pruned trial's costs are real but its quality is a partial run's. Example::

    >>> from types import SimpleNamespace as T
    >>> from trainers.objective import Objective
    >>> acc, ms = Objective("val_accuracy", "max"), Objective("latency_ms", "min")
    >>> trials = [T(number=0, objectives={"val_accuracy": 0.90, "latency_ms": 9.0}, state="completed"),
    ...           T(number=1, objectives={"val_accuracy": 0.85, "latency_ms": 2.0}, state="completed"),
    ...           T(number=2, objectives={"val_accuracy": 0.84, "latency_ms": 3.0}, state="completed")]
    >>> [t.number for t in pareto_front(trials, (acc, ms))]
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hpo.states import TrialState
from trainers.objective import Objective


def dominates(a: dict[str, float], b: dict[str, float], objectives: Sequence[Objective]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one."""
    at_least = all(o.sign * (a[o.metric] - b[o.metric]) >= 0 for o in objectives)
    return at_least and any(o.better(a[o.metric], b[o.metric]) for o in objectives)


def pareto_front(trials: Iterable, objectives: Sequence[Objective]) -> list:
    """The non-dominated completed trials, best first by the first objective."""
    scored = [t for t in trials if t.state == TrialState.COMPLETED and t.objectives
              and all(t.objectives.get(o.metric) is not None for o in objectives)]
    front = [t for t in scored if not any(dominates(u.objectives, t.objectives, objectives) for u in scored)]
    return objectives[0].ranked(front, key=lambda t: t.objectives[objectives[0].metric])
