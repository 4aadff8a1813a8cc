"""What runs inside one Ray Tune trial: sampled params -> TrainConfig -> trainers.fine_tune.

The only module that connects ``trainers`` to Ray: :class:`RayReporter` turns each epoch's
report into ``ray.tune.report`` with that epoch's checkpoint (Ray keeps the latest). A trial
that runs out of GPU memory even at its smallest micro-batch ends with a last result holding
``OOM_KEY``, which the searcher and the tracker turn into a failed-for-``oom`` trial.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune

from hpo.checkpoints import CheckpointStore
from hpo.search_space import HYPERPARAMETERS
from trainers import PreparedData, TrainConfig, fine_tune
from trainers.oom import TrainingOutOfMemory

TRIAL_NUMBER_KEY = "hpo_trial_number"  # the Optuna trial number: a trial's identity across resumes
RESUME_KEY = "hpo_resume_from"  # a checkpoint to continue from, set for interrupted trials
OOM_KEY = "hpo_out_of_memory"  # in a trial's last result: it ran out of GPU memory at its smallest micro-batch


NODE_KEY = "hpo_node_id"  # the Ray node a trial runs on (node_ip alone cannot tell nodes of one host apart)


class RayReporter:
    """Reports to Ray Tune; Ray copies the checkpoint folder into the trial's storage."""

    def __init__(self) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report({**metrics, NODE_KEY: self.node_id}, checkpoint=checkpoint)


def run_trial(config: dict[str, Any], *, data: PreparedData, fixed: dict[str, Any], checkpoints: str) -> None:
    """The Ray trainable. ``fixed`` holds the study-wide settings; ``config`` what Optuna sampled;
    ``checkpoints`` is ``storage.checkpoints``, where an interrupted trial's checkpoint is read from."""
    context = tune.get_context()
    num_threads = max(1, int(context.get_trial_resources().required_resources.get("CPU", 1)))
    params = {k: v for k, v in config.items() if k in HYPERPARAMETERS}
    with contextlib.ExitStack() as stack:
        resume_from = None
        if restored := tune.get_checkpoint():  # Ray restarted this trial (FailureConfig): its latest checkpoint
            resume_from = stack.enter_context(restored.as_directory())
        elif config.get(RESUME_KEY):  # an interrupted trial of an earlier attempt (hpo resume)
            resume_from = str(stack.enter_context(CheckpointStore(checkpoints).local_copy(config[RESUME_KEY])))
        train_config = TrainConfig.from_mapping({**fixed, **params, "num_threads": num_threads,
                                                 "resume_from": resume_from})
        try:
            fine_tune(train_config, data, RayReporter())
        except TrainingOutOfMemory as err:
            # A result, not an exception: the trial ends as failed for reason "oom" and the study goes on.
            print(f"trial ran out of memory: {err}", flush=True)
            tune.report({OOM_KEY: 1.0, "micro_batch_size": err.micro_batch_size})

