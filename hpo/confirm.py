"""The confirmation stage (``confirm.top_k``): the search's best configs trained again on further seeds, and the
study's winner chosen by its mean over those seeds, not by one lucky run.

Why: fine-tuning runs of one config differ by points across seeds (BERT on RTE: 70.0 to 77.3 by seed alone, Dodge
et al. 2020), and a search that keeps the maximum of many noisy runs picks the luckiest one; its value overstates
what the config gives again (the *optimism gap*). Reruns use seeds ``study.seed + 1 ..``; the search's own run is
not counted in the mean, because it is the run the selection favoured. Example::

    >>> from trainers.objective import Objective
    >>> summary = summarize({3: 0.85, 5: 0.84}, {3: [0.82, 0.83], 5: [0.84, 0.845]}, Objective("val_accuracy", "max"))
    >>> summary.winner, summary.search_best, round(summary.optimism_gap, 4), summary.winner_changed
    (5, 3, 0.025, True)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpo.records import ConfirmationRecord, TrialRecord
from hpo.states import TrialState
from trainers.objective import Objective

RANK_BY = ("mean", "lcb")  # confirm.rank_by: the mean, or the mean less one standard error (a lower confidence bound)


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


def candidates(trials: Iterable[TrialRecord], objective: Objective, top_k: int) -> list[TrialRecord]:
    """The ``top_k`` best completed trials: full-length runs, comparable with full-length reruns."""
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    return objective.ranked(completed, key=lambda t: t.best_metric)[:top_k]


def rerun_seeds(study_seed: int, count: int) -> list[int]:
    return [study_seed + 1 + i for i in range(count)]


def summary_of(trials: Iterable[TrialRecord], reruns: Iterable[ConfirmationRecord], objective: Objective,
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


def train_rerun(trainer, models, params: dict[str, Any], seed: int, data, num_threads: int) -> list[dict[str, float]]:
    """One rerun, in a Ray worker: ``params`` on ``seed``; returns each epoch's metrics."""
    from hpo.model_choice import trial_data, trial_settings
    from trainers import ConsoleReporter, fine_tune

    curve = ConsoleReporter()  # keeps each epoch's metrics (a rerun keeps no model)
    settings = trial_settings(trainer, params, models, seed=seed, num_threads=num_threads, resume_from=None)
    fine_tune(settings, trial_data(data, params), curve)
    return curve.history


def run_reruns(todo: Sequence[tuple[int, int, dict[str, Any]]], *, trainer, models, data, cpu: float, gpu: float,
               max_retries: int, max_concurrent: int, stopped: Callable[[], bool],
               started: Callable[[int, int], None], ended: Callable[[int, int, list | None, str | None], None]) -> None:
    """Runs ``todo`` (trial number, seed, params) as Ray tasks, ``max_concurrent`` at a time; ``started`` and
    ``ended(number, seed, epochs or None, error)`` are the ledger's. When ``stopped()`` turns true the running
    reruns are cancelled and reported with no epochs and no error (to be run again by ``hpo resume``)."""
    import ray

    task = ray.remote(train_rerun).options(num_cpus=cpu, num_gpus=gpu, max_retries=max_retries)
    shared = ray.put(data)
    pending, running = list(todo), {}
    while pending or running:
        while pending and len(running) < max_concurrent and not stopped():
            number, seed, params = pending.pop(0)
            started(number, seed)
            running[task.remote(trainer, models, params, seed, shared, max(1, int(cpu)))] = (number, seed)
        if stopped():
            for ref, (number, seed) in running.items():
                ray.cancel(ref, force=True)
                ended(number, seed, None, None)
            return
        done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for ref in done:
            number, seed = running.pop(ref)
            try:
                ended(number, seed, ray.get(ref), None)
            except ray.exceptions.RayError as err:
                ended(number, seed, None, str(err).splitlines()[0][:300])
