"""What runs inside one Ray Tune trial: sampled params -> TrainConfig -> trainers.fine_tune.

The only module that connects ``trainers`` to Ray: :class:`RayReporter` turns each epoch's
report into ``ray.tune.report`` with that epoch's checkpoint (Ray keeps the latest).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from hpo.search_space import HYPERPARAMETERS
from trainers import PreparedData, TrainConfig, fine_tune

TRIAL_NUMBER_KEY = "hpo_trial_number"  # the Optuna trial number: a trial's identity across resumes
RESUME_KEY = "hpo_resume_from"  # a checkpoint to continue from, set for interrupted trials


class RayReporter:
    """Reports to Ray Tune; Ray copies the checkpoint folder into the trial's storage."""

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(dict(metrics), checkpoint=checkpoint)


def run_trial(config: dict[str, Any], *, data: PreparedData, fixed: dict[str, Any]) -> None:
    """The Ray trainable. ``fixed`` holds the study-wide settings; ``config`` what Optuna sampled."""
    context = tune.get_context()
    num_threads = max(1, int(context.get_trial_resources().required_resources.get("CPU", 1)))
    params = {k: v for k, v in config.items() if k in HYPERPARAMETERS}
    restored = tune.get_checkpoint()  # Ray restarted this trial (FailureConfig): its own latest checkpoint
    with restored.as_directory() if restored else contextlib.nullcontext() as restored_dir:
        resume_from = restored_dir or config.get(RESUME_KEY)
        train_config = TrainConfig.from_mapping({**fixed, **params, "num_threads": num_threads,
                                                 "resume_from": resume_from})
        fine_tune(train_config, data, RayReporter())

