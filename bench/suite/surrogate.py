"""What a replayed trial plays back for a config the table never recorded: the recorded configs of its model nearest
to it in the space normalized to the unit cube, blended by inverse-distance weights (Shepard's interpolation over the
``k`` nearest). With ``k = 1`` it is the nearest neighbour: a study can only reach one of the table's few points and a
sampler's refinement is invisible (TPE collapses onto one cell). With ``k = 3`` the surface is continuous, exact at
every recorded config (unless smoothed: ``bandwidth``), and never above the best of its neighbours, so the oracle
stays the best recorded config and moving towards it pays: what model-based samplers are for. Curves, epoch
seconds and the true quality (the mean over recorded training seeds) are blended alike.

    >>> import optuna
    >>> from bench.suite.tables import Run, Table
    >>> run = lambda lr, *acc: Run({"learning_rate": lr}, [(1.0, {"acc": a}) for a in acc])
    >>> table = Table({("m", "0", 0): run(1e-5, .5, .6, .7), ("m", "1", 0): run(1e-3, .7, .8, .9)}, metric="acc")
    >>> space = {"m": {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}}
    >>> [round(v, 3) for v in Surrogate(table, space, k=2).play("m", {"learning_rate": 1e-4}).curve]  # half-way
    [0.6, 0.7, 0.8]
    >>> Surrogate(table, space, k=2).play("m", {"learning_rate": 1e-3}).curve  # a recorded config: exact
    [0.7, 0.8, 0.9]
    >>> Surrogate(table, space, k=2, bandwidth=0.5).play("m", {"learning_rate": 1e-3}).curve[-1] < 0.9  # smoothed
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from bench.suite.tables import Table


@dataclass(frozen=True)
class Played:
    """What a trial of one config plays back, epoch by epoch."""

    curve: list[float]  # the observed metric (seed 0), what the study sees
    seconds: list[float]  # each epoch's cost
    quality: list[float]  # the true quality once trained that many epochs: best epoch so far, mean over seeds


def config_quality(table: Table, model: str, config: str, epochs: int) -> float:
    """A recorded config's true quality trained ``epochs`` epochs: its best epoch so far, averaged over seeds."""
    return statistics.mean(max(table.curve(model, config, s)[:epochs]) for s in table.seeds(model, config))


class Surrogate:
    """Blends the ``k`` nearest recorded configs of a model (the baseline config too) by inverse squared distance;
    ``bandwidth`` > 0 smooths (weights ``1 / (d^2 + bandwidth^2)``), so a recorded config is blended with its
    neighbours too and no design gains from hitting one exactly (a portfolio's configs are recorded ones)."""

    def __init__(self, table: Table, spaces: Mapping[str, Mapping[str, BaseDistribution]], k: int = 3,
                 bandwidth: float = 0.0) -> None:
        self.table, self.spaces, self.k, self.bandwidth = table, spaces, k, bandwidth
        self.points = {m: [(c, normalized(table.params(m, c), spaces[m]))
                           for _, c in table.configs(m, drawn_only=False)]
                       for m in table.models() if m in spaces}
        self.played = {(m, c): self._recorded(m, c) for m, points in self.points.items() for c, _ in points}

    def play(self, model: str, params: Mapping[str, Any]) -> Played:
        point = normalized(params, self.spaces[model])
        near = sorted((math.dist(p, point), c) for c, p in self.points[model])[: self.k]
        if len(near) == 1 or near[0][0] ** 2 + self.bandwidth**2 < 1e-12:  # one neighbour, or an exact hit: its record
            return self.played[(model, near[0][1])]
        weights = [(1 / (d**2 + self.bandwidth**2), self.played[(model, c)]) for d, c in near]
        total = sum(w for w, _ in weights)

        def blend(field: str) -> list[float]:
            return [sum(w * getattr(p, field)[i] for w, p in weights) / total
                    for i in range(min(len(getattr(p, field)) for _, p in weights))]

        return Played(blend("curve"), blend("seconds"), blend("quality"))

    def _recorded(self, model: str, config: str) -> Played:
        curve = self.table.curve(model, config)
        return Played(curve, self.table.seconds(model, config),
                      [config_quality(self.table, model, config, e) for e in range(1, len(curve) + 1)])


def normalized(params: Mapping[str, Any], space: Mapping[str, BaseDistribution]) -> list[float]:
    """``params`` as a point of the unit cube (log scale where the distribution is; categories evenly spaced)."""
    point = []
    for name, dist in space.items():
        value = params.get(name)
        if isinstance(dist, CategoricalDistribution):
            point.append(dist.choices.index(value) / max(1, len(dist.choices) - 1) if value in dist.choices else 0.5)
            continue
        low, high = dist.low, dist.high  # type: ignore[attr-defined]
        value = min(max(low, value), high) if value is not None else (low + high) / 2
        if dist.log:  # type: ignore[attr-defined]
            low, high, value = math.log(low), math.log(high), math.log(value)
        point.append((value - low) / (high - low) if high > low else 0.0)
    return point
