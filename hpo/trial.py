"""What runs inside one Ray Tune trial: sampled params -> TrainConfig -> trainers.fine_tune.

The only module that connects ``trainers`` to Ray: :class:`RayReporter` turns each epoch's
report into ``ray.tune.report``, with a checkpoint when the metric improved.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from trainers import PreparedData, TrainConfig, fine_tune


class RayReporter:
    """Reports to Ray Tune; Ray copies the checkpoint folder into the trial's storage."""

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(dict(metrics), checkpoint=checkpoint)


def run_trial(params: dict[str, Any], *, data: PreparedData, fixed: dict[str, Any]) -> None:
    """The Ray trainable. ``fixed`` holds the study-wide settings; ``params`` what Optuna sampled."""
    context = tune.get_context()
    num_threads = max(1, int(context.get_trial_resources().required_resources.get("CPU", 1)))
    config = TrainConfig.from_mapping({**fixed, **params, "num_threads": num_threads})
    fine_tune(config, data, RayReporter())
