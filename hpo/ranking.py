"""Which trial or config is best when one value is not enough: the Pareto front of a multi-objective study and
the confirmation stage's statistics. Pure functions of recorded values, shared by the ledger, the report and the
benchmarks; single-objective "which value is better" lives in :class:`trainers.objective.Objective`.

**Pareto front** (``study.objectives``): the trials no other trial beats on every objective at once, each objective
read at the trial's best epoch of the first. Only completed trials count: a pruned trial's costs are real but its
quality is a partial run's. Example::

    >>> from types import SimpleNamespace as T
    >>> acc, ms = Objective("val_accuracy", "max"), Objective("latency_ms", "min")
    >>> trials = [T(number=0, objectives={"val_accuracy": 0.90, "latency_ms": 9.0}, state="completed"),
    ...           T(number=1, objectives={"val_accuracy": 0.85, "latency_ms": 2.0}, state="completed"),
    ...           T(number=2, objectives={"val_accuracy": 0.84, "latency_ms": 3.0}, state="completed")]
    >>> [t.number for t in pareto_front(trials, (acc, ms))]
    [0, 1]

**Confirmation** (``confirm.top_k``): the search's best configs trained again on further seeds, and the study's
winner chosen by its mean over those seeds, not by one lucky run. Fine-tuning runs of one config differ by points
across seeds (BERT on RTE: 70.0 to 77.3 by seed alone, Dodge et al. 2020), and a search that keeps the maximum of
many noisy runs picks the luckiest one; its value overstates what the config gives again (the *optimism gap*).
Reruns use seeds ``study.seed + 1 ..``; the search's own run is not counted in the mean, because it is the run the
selection favoured. Example::

    >>> summary = summarize({3: 0.85, 5: 0.84}, {3: [0.82, 0.83], 5: [0.84, 0.845]}, Objective("val_accuracy", "max"))
    >>> summary.winner, summary.search_best, round(summary.optimism_gap, 4), summary.winner_changed
    (5, 3, 0.025, True)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpo.states import TrialState
from trainers.config import COST_METRICS
from trainers.objective import Objective


def dominates(a: dict[str, float], b: dict[str, float], objectives: Sequence[Objective]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one."""
    at_least = all(o.sign * (a[o.metric] - b[o.metric]) >= 0 for o in objectives)
    return at_least and any(o.better(a[o.metric], b[o.metric]) for o in objectives)


def objectives_at_best(held: Mapping[str, float], result: Mapping[str, Any], objectives: Sequence[Objective],
                       improved: bool) -> dict[str, float]:
    """Each objective at the trial's best epoch of the first (``improved``: this epoch is its new best); a cost
    (latency, size, seconds) at the least measured so far: it does not change with training, and timing noise only
    ever adds to it.

    >>> acc, ms = Objective("val_accuracy", "max"), Objective("latency_ms", "min")
    >>> objectives_at_best({"val_accuracy": 0.8, "latency_ms": 3.0}, {"val_accuracy": 0.7, "latency_ms": 2.5},
    ...                    (acc, ms), improved=False)
    {'val_accuracy': 0.8, 'latency_ms': 2.5}
    """
    values = dict(held)
    for objective in objectives:
        new = result.get(objective.metric)
        if new is not None and objective.metric in COST_METRICS:
            values[objective.metric] = min(values.get(objective.metric, new), new)
        elif new is not None and improved:
            values[objective.metric] = new
    return values


def pareto_front(trials: Iterable, objectives: Sequence[Objective]) -> list:
    """The non-dominated completed trials, best first by the first objective."""
    scored = [t for t in trials if t.state == TrialState.COMPLETED and t.objectives
              and all(t.objectives.get(o.metric) is not None for o in objectives)]
    front = [t for t in scored if not any(dominates(u.objectives, t.objectives, objectives) for u in scored)]
    return objectives[0].ranked(front, key=lambda t: t.objectives[objectives[0].metric])


# --- confirmation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfirmedConfig:
    """One confirmed config: its search trial's value and its reruns' values."""

    trial_number: int
    search_value: float
    values: tuple[float, ...]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def bound(self, objective: Objective) -> float | None:
        """The mean moved one standard error toward worse: configs that vary more across seeds rank lower."""
        if self.mean is None:
            return None
        return self.mean - objective.sign * self.sd / math.sqrt(len(self.values))


@dataclass(frozen=True)
class ConfirmationSummary:
    """The confirmed configs ranked best first (configs without a finished rerun last), and what changed."""

    configs: tuple[ConfirmedConfig, ...]
    search_best: int  # the candidate the search alone would have picked
    objective: Objective

    @property
    def winner(self) -> int:
        return self.configs[0].trial_number

    @property
    def winner_changed(self) -> bool:
        return self.winner != self.search_best

    def config(self, number: int) -> ConfirmedConfig:
        return next(c for c in self.configs if c.trial_number == number)

    @property
    def optimism_gap(self) -> float | None:
        """How much better the search's best run looked than its config's confirmed mean (positive: optimistic)."""
        best = self.config(self.search_best)
        return None if best.mean is None else self.objective.improvement(best.search_value, best.mean)

    def describe(self) -> str:
        """One line for the study's log."""
        winner, gap = self.config(self.winner), self.optimism_gap
        mean = f"{winner.mean:.4f} +/- {winner.sd:.4f} over {len(winner.values)} seeds" if winner.mean is not None \
            else "no rerun finished"
        changed = f", not the search's best (trial {self.search_best})" if self.winner_changed else ""
        gap_text = f"; the search's best run was {gap:+.4f} above its config's mean" if gap is not None else ""
        return f"confirmed winner: trial {self.winner} ({mean}){changed}{gap_text}"


def summarize(search_values: Mapping[int, float], reruns: Mapping[int, Sequence[float]], objective: Objective,
              rank_by: str = "mean") -> ConfirmationSummary:
    """Ranks the configs (keyed by search trial number) by their reruns' mean or lower bound."""
    configs = [ConfirmedConfig(n, v, tuple(reruns.get(n, ()))) for n, v in search_values.items()]
    score = (lambda c: c.mean) if rank_by == "mean" else (lambda c: c.bound(objective))
    ranked = objective.ranked(configs, key=score) + [c for c in configs if score(c) is None]
    search_best = objective.ranked(configs, key=lambda c: c.search_value)[0].trial_number
    return ConfirmationSummary(tuple(ranked), search_best, objective)


def candidates(trials: Iterable[Any], objective: Objective, top_k: int) -> list[Any]:
    """The ``top_k`` best completed trials: full-length runs, comparable with full-length reruns."""
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    return objective.ranked(completed, key=lambda t: t.best_metric)[:top_k]


def rerun_seeds(study_seed: int, count: int) -> list[int]:
    return [study_seed + 1 + i for i in range(count)]


def summary_of(trials: Iterable[Any], reruns: Iterable[Any], objective: Objective,
               top_k: int, rank_by: str) -> ConfirmationSummary | None:
    """The summary of what the registry holds; None when there is nothing to confirm."""
    chosen = candidates(trials, objective, top_k)
    if not chosen:
        return None
    values: dict[int, list[float]] = {}
    for rerun in reruns:
        if rerun.state == TrialState.COMPLETED and rerun.best_metric is not None:
            values.setdefault(rerun.trial_number, []).append(rerun.best_metric)
    return summarize({t.number: t.best_metric for t in chosen}, values, objective, rank_by)
