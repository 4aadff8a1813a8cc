"""Quality against cost per model, for a study that searches the model (``search.model``): the report's table.

A bigger encoder that wins by a tenth of a point while costing four times the GPU hours is rarely the one to
ship; this table puts each model's best value beside what its epochs cost (``epoch_seconds``, training
examples per second, trainable parameters), read from the trials' MLflow runs.

Example::

    >>> from trainers.objective import Objective
    >>> rows = [ModelCost("minilm_l6", 4, 0.84, 21.0, 150.0, 2.2e7, 90.0)]
    >>> model_cost_lines(rows, Objective("val_accuracy", "max"))[-2]
    '| minilm_l6 | 4 | 0.8400 | 21.0 | 150 | 22.0M | 90 |'
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from hpo.config.search_space import MODEL
from hpo.stores.registry import TrialRecord
from hpo.stores.tracking import client as tracking_client
from trainers.objective import Objective


@dataclass(frozen=True)
class ModelCost:
    model: str
    trials: int
    best: float | None  # the best value of its finished trials
    epoch_seconds: float | None  # median over its trials (each trial's latest epoch)
    examples_per_s: float | None  # training throughput, median over its trials
    trainable_params: float | None
    train_seconds: float | None  # all its trials' epochs: each trial's latest epoch_seconds x its epochs


def model_costs(trials: Sequence[TrialRecord], objective: Objective, tracking_uri: str) -> list[ModelCost]:
    """One row per model the study's trials used, best first; empty when the model was not searched."""
    by_model: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        if (trial.params or {}).get(MODEL) is not None:
            by_model.setdefault(trial.params[MODEL], []).append(trial)
    if not by_model:
        return []

    client = tracking_client(tracking_uri)
    metrics = {t.number: client.get_run(t.mlflow_run_id).data.metrics for t in trials if t.mlflow_run_id}
    rows = []
    for model, group in by_model.items():
        seen = [metrics[t.number] for t in group if t.number in metrics]

        def median(key: str, seen=seen) -> float | None:
            values = [m[key] for m in seen if key in m]
            return statistics.median(values) if values else None

        finished = [t.best_metric for t in group if t.state.finished]
        total = sum(metrics[t.number].get("epoch_seconds", 0.0) * t.epochs for t in group if t.number in metrics)
        rows.append(ModelCost(model, len(group), objective.best(finished), median("epoch_seconds"),
                              median("train_examples_per_s"), median("trainable_params"), total or None))
    return objective.ranked(rows, key=lambda r: r.best) + [r for r in rows if r.best is None]


def model_cost_lines(rows: Sequence[ModelCost], objective: Objective) -> list[str]:
    """The report's "Models" section."""
    if not rows:
        return []

    def cell(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    lines = ["## Models", "", f"Each searched model's best {objective.metric} beside what its trials cost "
             "(medians over its trials; training seconds are all its epochs).", "",
             "| model | trials | best | s / epoch | train examples / s | trainable params | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        params = "-" if r.trainable_params is None else f"{r.trainable_params / 1e6:.1f}M"
        lines.append(f"| {r.model} | {r.trials} | {cell(r.best, '.4f')} | {cell(r.epoch_seconds, '.1f')} | "
                     f"{cell(r.examples_per_s, '.0f')} | {params} | {cell(r.train_seconds, '.0f')} |")
    return lines + [""]
