"""The recorded curves (``record.py`` writes them), looked up by configuration, and the bookkeeping of a
replayed study: best-so-far against epochs spent. Example::

    >>> anytime([[0.6, 0.7], [0.8]])                      # two trials, three epochs spent in order
    [0.6, 0.7, 0.8]
    >>> epochs_to_reach([0.6, 0.7, 0.8], 0.7), best_at_budget([0.6, 0.7, 0.8], 2)
    (2, 0.7)
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

# The space the committed table was drawn from (hpo's default space when it was recorded, MiniLM's 6 blocks).
# Pinned here, not read from conf/: the defaults may move, the recorded configs do not; a design whose space
# lies inside this one replays faithfully.
RECORDED_SPACE: dict[str, BaseDistribution] = {
    "learning_rate": FloatDistribution(2e-5, 3e-4, log=True),
    "batch_size": CategoricalDistribution([16, 32, 64]),
    "freeze_depth": IntDistribution(0, 6),
    "weight_decay": FloatDistribution(0.0, 0.1),
    "dropout": FloatDistribution(0.0, 0.2),
    "layer_lr_decay": FloatDistribution(0.7, 1.0),
    "warmup_ratio": FloatDistribution(0.0, 0.2),
}


@dataclass(frozen=True)
class Recorded:
    """One recorded configuration: its params and, per training seed, the metric after each epoch."""

    params: dict[str, Any]
    curves: dict[int, list[float]]


class ReplayTable:
    def __init__(self, recorded: Sequence[Recorded], space: Mapping[str, BaseDistribution]) -> None:
        self.recorded, self.space = list(recorded), dict(space)
        self._points = [normalized(r.params, self.space) for r in self.recorded]

    @classmethod
    def from_csv(cls, path: str | Path, space: Mapping[str, BaseDistribution],
                 metric: str = "val_accuracy") -> ReplayTable:
        """Rows as ``record.py`` writes them: config, seed, one column per hyperparameter, epoch, metrics."""
        curves: dict[int, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        params: dict[int, dict[str, Any]] = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                config = int(row["config"])
                params[config] = {name: _typed(dist, row[name]) for name, dist in space.items()}
                curves[config][int(row["seed"])][int(row["epoch"])] = float(row[metric])
        return cls([Recorded(params[c], {s: [by_epoch[e] for e in sorted(by_epoch)] for s, by_epoch in seeds.items()})
                    for c, seeds in sorted(curves.items())], space)

    def nearest(self, params: Mapping[str, Any]) -> Recorded:
        """The recorded config closest to ``params`` in the normalized space (each dimension in [0, 1])."""
        point = normalized(params, self.space)
        return min(zip(self._points, self.recorded, strict=True), key=lambda pr: math.dist(pr[0], point))[1]

    def oracle(self, epochs: int, seed: int = 0) -> float:
        """The best value any recorded config reaches within ``epochs`` epochs of training (seed ``seed``)."""
        return max(max(r.curves[seed][:epochs]) for r in self.recorded if seed in r.curves)


def normalized(params: Mapping[str, Any], space: Mapping[str, BaseDistribution]) -> list[float]:
    """Each hyperparameter mapped to [0, 1]: log ranges on a log scale, a categorical by its position."""
    point = []
    for name, dist in space.items():
        value = params[name]
        if isinstance(dist, CategoricalDistribution):
            point.append(dist.choices.index(value) / max(1, len(dist.choices) - 1))
        elif isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high, value = (math.log(x) if dist.log else x for x in (dist.low, dist.high, value))
            point.append((value - low) / (high - low) if high > low else 0.0)
        else:
            raise TypeError(f"{name}: cannot place {dist!r} in the replay space")
    return point


def _typed(dist: BaseDistribution, text: str) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return next(c for c in dist.choices if str(c) == text)
    return int(text) if isinstance(dist, IntDistribution) else float(text)


def anytime(curves: Sequence[Sequence[float]], higher_is_better: bool = True) -> list[float]:
    """Best value so far after each epoch spent, trials taken in the order they ran (one at a time)."""
    sign, best, out = (1 if higher_is_better else -1), None, []
    for curve in curves:
        for value in curve:
            best = value if best is None or sign * (value - best) > 0 else best
            out.append(best)
    return out


def top_k_after_one_epoch(table: ReplayTable, space: Mapping[str, BaseDistribution], n: int, k: int,
                          seed: int) -> list[float]:
    """The literature's baseline (Dodge et al. 2020, Egele et al. 2023) replayed: ``n`` random configs one epoch
    each, the best ``k`` of them trained on to the end; its anytime curve."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    curves = [table.nearest(study.ask(dict(space)).params).curves[0] for _ in range(n)]
    kept = sorted(range(n), key=lambda i: -curves[i][0])[:k]
    return anytime([[c[0]] for c in curves] + [curves[i][1:] for i in kept])


def epochs_to_reach(curve: Sequence[float], target: float, higher_is_better: bool = True) -> int | None:
    """How many epochs the anytime ``curve`` needs to reach ``target`` (None: never)."""
    sign = 1 if higher_is_better else -1
    return next((i + 1 for i, v in enumerate(curve) if sign * (v - target) >= 0), None)


def best_at_budget(curve: Sequence[float], epochs: int) -> float:
    """The anytime ``curve``'s value once ``epochs`` epochs are spent (its last value if it spent fewer)."""
    return curve[min(epochs, len(curve)) - 1]
