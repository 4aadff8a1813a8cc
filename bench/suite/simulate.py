"""Replays a search design over a dataset's recorded table, without Ray: thousands of studies in minutes, so designs
are compared over many search seeds on every dataset. What a design decides is real: its space and sampler are
built from hpo's config exactly as a study builds them (Optuna asks, hpo's space samples, the ledger's feedback is
told: intermediate values, PRUNED or COMPLETE), ASHA's rule is Ray 2.60's ``AsyncHyperBandScheduler`` rule
(``_Bracket.on_result``: at a rung, a trial below the ``1 - 1/rf`` quantile of the values recorded there so far
stops), and a trial plays back what ``surrogate.py`` gives for its config: the seed-0 curves, epoch seconds and
seed-mean quality of the nearest recorded configs of its model, blended.
Trials run one at a time, so compute (the recorded seconds) orders everything; ``bench/suite/real_check.py``
checks the ordering this gives against real studies.

What a design finds is valued as its incumbent's true quality: the mean over recorded training seeds of the best
epoch within the epochs the incumbent trained (the top configs have 3 seeds), not its lucky observed value.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

from bench.suite.datasets import SuiteDataset
from bench.suite.surrogate import Played, Surrogate, config_quality
from bench.suite.tables import BASELINE, Table
from hpo import build_spec, compose
from hpo.config.search_space import MODEL, trainer_name
from hpo.study.model_pick import ModelEvidence, pick_model
from hpo.study.portfolio import fit_into

ASHA_TARGETS = ("ray.tune.schedulers.ASHAScheduler", "ray.tune.schedulers.AsyncHyperBandScheduler",
                "hpo.study.per_model_asha.PerModelASHA")
FIFO_TARGET = "ray.tune.schedulers.FIFOScheduler"


@dataclass(frozen=True)
class Design:
    """``overrides`` on the dataset's study; ``kind`` ``study`` (an hpo study) or ``i_epoch`` (Egele et al.'s baseline:
    random configs one epoch each, the best quarter continued to the end); ``first`` configs evaluated first
    (a portfolio)."""

    name: str
    overrides: tuple[str, ...] = ()
    kind: str = "study"
    first: tuple[Mapping[str, Any], ...] = ()


@dataclass
class Trace:
    """The anytime curve of one replayed study: after each epoch, the compute spent and the incumbent's quality."""

    spent: list[float]
    quality: list[float]
    trials: int
    ends: list[int] = field(default_factory=list)  # len(quality) when each trial ended
    finished: list[tuple[float, Played]] = field(default_factory=list)  # per trial: its observed best, its play

    def after(self, trials: int) -> float | None:
        """The incumbent's quality once the first ``trials`` trials ended."""
        return self.quality[self.ends[min(trials, len(self.ends)) - 1] - 1] if self.ends else None

    def at(self, budget: float) -> float | None:
        """The incumbent's quality once ``budget`` seconds are spent (None: no epoch finished within it)."""
        found = None
        for spent, quality in zip(self.spent, self.quality, strict=True):
            if spent > budget:
                break
            found = quality
        return found


def model_spaces(recording_spec) -> dict[str, dict[str, BaseDistribution]]:
    """Each suite model's part of the recorded space, under the trainer's names."""
    spaces: dict[str, dict[str, BaseDistribution]] = {}
    for model in recording_spec.models:
        spaces[model] = {trainer_name(n): d for n, d in recording_spec.space.distributions.items()
                         if n != MODEL and n.partition(".")[2] in ("", model)}
    return spaces


class Asha:
    """Ray's asynchronous successive halving rule for trials that run one at a time (one bracket)."""

    def __init__(self, grace_period: int, reduction_factor: float, max_t: int) -> None:
        self.rf = reduction_factor
        self.milestones = sorted((grace_period * reduction_factor ** k for k in range(8)
                                  if grace_period * reduction_factor ** k < max_t), reverse=True)
        self.recorded: dict[Any, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))

    def stops(self, group: Any, trial: int, epoch: int, value: float) -> bool:
        for milestone in self.milestones:
            if epoch < milestone:
                continue
            rung = self.recorded[group][milestone]
            if trial in rung:
                return False
            cutoff = np.nanpercentile(list(rung.values()), (1 - 1 / self.rf) * 100) if rung else None
            rung[trial] = value
            return cutoff is not None and value < cutoff
        return False


def design_spec(dataset: SuiteDataset, design: Design):
    return build_spec(compose([*dataset.overrides, *design.overrides, "study.name=replay"]))


def replay_study(spec, surrogate: Surrogate, budget: float, small: str, design: Design, seed: int) -> Trace:
    """One hpo study of ``spec`` (search seed ``seed``) replayed until ``budget`` seconds of recorded compute are
    spent."""
    study = optuna.create_study(direction="maximize", sampler=spec.sampler.build(seed=seed))
    for point in [fit_into(spec.space, p) for p in design.first] or _first_points(spec):  # as the ledger queues them
        study.enqueue_trial(point)
    scheduler = spec.scheduler
    if scheduler.target in ASHA_TARGETS:
        k = scheduler.kwargs
        asha: Asha | None = Asha(k.get("grace_period", 1), k.get("reduction_factor", 4), k["max_t"])
    elif scheduler.target == FIFO_TARGET:
        asha = None
    else:
        raise ValueError(f"the replay knows ASHA and FIFO, not {scheduler.target}")
    spent, trace, best = 0.0, Trace([], [], 0), (-math.inf, 0.0)
    values: dict[str, list[float]] = defaultdict(list)  # per model: its trials' best values (search.model_choice)
    seconds: dict[str, list[float]] = defaultdict(list)  # per model: the epoch seconds its trials took
    while spent < budget:
        if spec.study.model_choice == "ei_per_second" and not study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            seen = {m: ModelEvidence(tuple(values[m]), statistics.mean(seconds[m]) if seconds[m] else None)
                    for m in spec.models}
            if (model := pick_model(seen, maximize=True, epochs=spec.trainer.max_epochs)) is not None:
                study.enqueue_trial({MODEL: model})
        trial = study.ask()
        params = spec.space.sample(trial)
        model = str(params.get(MODEL, small))
        played = surrogate.play(model, trainer_point(spec, params))
        curve, seconds_of = played.curve, played.seconds
        stopped = False
        for epoch, (value, cost) in enumerate(zip(curve, seconds_of, strict=True), 1):
            spent += cost
            trial.report(value, epoch)
            if value > best[0]:
                best = (value, played.quality[epoch - 1])
            trace.spent.append(spent)
            trace.quality.append(best[1])
            group = model if scheduler.target.endswith("PerModelASHA") else None  # rungs per model
            if asha and epoch < len(curve) and asha.stops(group, trial.number, epoch, value):
                stopped = True
                break
        trace.trials += 1
        trace.ends.append(len(trace.quality))
        trace.finished.append((max(curve[:epoch]), played))
        values[model].append(max(curve[:epoch]))
        seconds[model].extend(seconds_of[:epoch])
        if stopped and spec.study.feedback == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, max(curve[:epoch]))
    return trace


def replay_confirmed(spec, surrogate: Surrogate, budget: float, small: str, design: Design, seed: int) -> float | None:
    """A study with ``confirm.top_k`` (``hpo.ranking``) ended at ``budget``: the search spends what the confirmation
    leaves (``top_k * seeds`` full runs of the small model), then the top configs by observed value are trained on
    more seeds and the best seed mean wins: its quality is the config's mean over the recorded seeds. Returns the
    winner's quality; where the confirmation would take more than half the budget, the plain study's incumbent."""
    confirm = spec.confirm
    reserve = confirm.top_k * confirm.seeds * surrogate.table.epoch_seconds(small) * spec.trainer.max_epochs
    if confirm.top_k == 0 or 2 * reserve > budget:
        return replay_study(spec, surrogate, budget, small, design, seed).at(budget)
    trace = replay_study(spec, surrogate, budget - reserve, small, design, seed)
    top: list[Played] = []  # distinct plays: trials the surrogate maps to one recorded run share its seed-0 luck
    for _, played in sorted(trace.finished, key=lambda vp: -vp[0]):
        if played not in top and len(top) < confirm.top_k:
            top.append(played)
    return max(played.quality[-1] for played in top)


def replay_i_epoch(surrogate: Surrogate, spec, budget: float, small: str, seed: int) -> Trace:
    """i-Epoch (Egele et al. 2024) with i = 1: random configs of ``small`` one epoch each, then the best quarter
    continued to the end, best first; as many configs as make the whole plan about ``budget``."""
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    per_epoch = surrogate.table.epoch_seconds(small)
    epochs = len(next(iter(surrogate.played.values())).curve)
    count = max(4, int(budget / per_epoch / (1 + (epochs - 1) / 4)))
    drawn = [surrogate.play(small, trainer_point(spec, spec.space.sample(study.ask())))
             for _ in range(count)]
    spent, trace, best = 0.0, Trace([], [], count), (-math.inf, 0.0)

    def run(played: Played, epochs_range: range) -> None:
        nonlocal spent, best
        for epoch in epochs_range:
            spent += played.seconds[epoch - 1]
            if played.curve[epoch - 1] > best[0]:
                best = (played.curve[epoch - 1], played.quality[epoch - 1])
            trace.spent.append(spent)
            trace.quality.append(best[1])

    for played in drawn:
        run(played, range(1, 2))
    for played in sorted(drawn, key=lambda p: -p.curve[0])[: max(1, count // 4)]:
        run(played, range(2, epochs + 1))
    return trace


def regret(found: float | None, oracle: float, median: float) -> float:
    """Normalized regret: 0 at the oracle, 1 at the median config (and for nothing found yet)."""
    if found is None:
        return 1.0
    return (oracle - found) / (oracle - median) if oracle > median else 0.0


def trainer_point(spec, params: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial trains with, under the trainer's names: the sampled ``params`` over the spec's fixed trainer
    values (a design that fixes a hyperparameter, ``search.freeze_depth=0``, trains with that value)."""
    fixed = {k: v for k, v in vars(spec.trainer).items() if isinstance(v, int | float | bool | str)}
    return {**fixed, **{trainer_name(k): v for k, v in params.items()}}


def _first_points(spec) -> list[dict[str, Any]]:
    if spec.study.first_trial == "portfolio":  # the shipped one was learned from every dataset, this one too
        raise ValueError("a replayed portfolio is the leave-one-out one: give it as Design.first")
    return spec.space.midpoints() if spec.study.first_trial == "midpoint" else []


def baseline_quality(table: Table, model: str) -> float | None:
    """The fixed baseline config's 3-seed quality (None until recorded)."""
    return config_quality(table, model, BASELINE, 99) if table.seeds(model, BASELINE) else None


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values)
