"""``search.model_choice=ei_per_second``: which pretrained model a study's next trial fine-tunes, chosen by expected
improvement per second of compute (Snoek, Larochelle and Adams 2012, *Practical Bayesian Optimization of Machine
Learning Algorithms*, "EI per second"), so a model 4-5x costlier per epoch gets a trial when its expected gain pays
for its cost, and not merely because the sampler drew it. The sampler (TPE) still chooses that trial's other
hyperparameters, within the chosen model's prior.

Each model's next trial is predicted as a normal: its mean the mean of the model's better half of finished trials
(the sampler concentrates near them), its spread their standard deviation (the pooled one while a model has a single
trial); the cost is the model's measured seconds per epoch times the epochs of a trial. A model with no finished trial
goes first. Example: a big model a point better than the incumbent is worth its 4x cost; one a point worse is not::

    >>> pick_model({"small": ModelEvidence((0.80, 0.82, 0.84), 10.0), "big": ModelEvidence((0.85,), 40.0)},
    ...            maximize=True, epochs=3)
    'big'
    >>> pick_model({"small": ModelEvidence((0.80, 0.82, 0.84), 10.0), "big": ModelEvidence((0.83,), 40.0)},
    ...            maximize=True, epochs=3)
    'small'
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hpo.config.search_space import MODEL
from hpo.stores.registry import TrialRecord

MIN_SPREAD = 1e-3  # keeps a model whose few trials agree exactly from looking certain


@dataclass(frozen=True)
class ModelEvidence:
    values: tuple[float, ...]  # the objective of each finished (or pruned) trial of the model, at its best epoch
    epoch_seconds: float | None  # the model's mean measured seconds per epoch; None until one epoch is measured


def pick_model(evidence: Mapping[str, ModelEvidence], *, maximize: bool, epochs: int) -> str | None:
    """The model to try next: one without a finished trial first (in the given order); else the highest expected
    improvement per second; None when a model's cost is not measured yet (the sampler chooses meanwhile)."""
    for model, seen in evidence.items():
        if not seen.values:
            return model
    if any(seen.epoch_seconds is None for seen in evidence.values()):
        return None
    sign = 1.0 if maximize else -1.0
    signed = {m: [sign * v for v in seen.values] for m, seen in evidence.items()}
    incumbent = max(v for values in signed.values() for v in values)
    pooled = statistics.pstdev([v for values in signed.values() for v in values])

    def ei_per_second(model: str) -> float:
        values = sorted(signed[model], reverse=True)
        better = values[: max(1, math.ceil(len(values) / 2))]
        mean = statistics.mean(better)
        spread = max(MIN_SPREAD, statistics.pstdev(values) if len(values) > 1 else pooled)
        cost = float(evidence[model].epoch_seconds or 1.0) * epochs
        return expected_improvement(mean, spread, incumbent) / cost

    return max(evidence, key=ei_per_second)


def expected_improvement(mean: float, spread: float, incumbent: float) -> float:
    """E[max(0, X - incumbent)] for X ~ Normal(mean, spread^2).

    >>> round(expected_improvement(0.0, 1.0, 0.0), 4)  # 1/sqrt(2 pi)
    0.3989
    """
    z = (mean - incumbent) / spread
    return (mean - incumbent) * _cdf(z) + spread * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def evidence(models: Sequence[str], trials: Iterable[TrialRecord],
             epoch_seconds: Mapping[str, Sequence[float]]) -> dict[str, ModelEvidence]:
    """Each model choice's evidence from the study's trials (those with a result) and the epoch seconds its trials
    reported (kept by the ledger as they arrive)."""
    values: dict[str, list[float]] = {m: [] for m in models}
    for trial in trials:
        model = (trial.params or {}).get(MODEL)
        if model in values and trial.state.has_result and trial.best_metric is not None:
            values[model].append(trial.best_metric)
    return {m: ModelEvidence(tuple(values[m]), statistics.mean(epoch_seconds[m]) if epoch_seconds.get(m) else None)
            for m in models}
