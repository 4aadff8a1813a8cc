"""A Ray trainable that plays back a recorded curve instead of training: the config it is given is looked
up in the replay table (nearest recorded config) and its metric reported epoch by epoch, so the real
scheduler stops it and the real ledger records it exactly as it would a trained trial."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench.replay.table import ReplayTable
from hpo import HYPERPARAMETERS


def replay_trainable(table: ReplayTable, metric: str = "val_accuracy", seed: int = 0) -> Callable:
    """``hpo.study.run.run_study(spec, trainable=...)``: each trial reports ``table``'s curve of its nearest config."""
    import ray.cloudpickle
    from ray import tune

    for module in ("bench.replay.table", __name__):  # Ray workers need not find the bench package on their path
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])

    def replay_trial(config: dict[str, Any], *, data, trainer, checkpoints, **_: Any) -> None:  # task=, models=
        params = {k: v for k, v in config.items() if k in HYPERPARAMETERS}
        curve = table.nearest(params).curves[seed]
        for epoch, value in enumerate(curve[: trainer.max_epochs], 1):
            tune.report({"epoch": epoch, metric: value})

    return replay_trial
