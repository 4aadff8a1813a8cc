"""What runs inside one Ray Tune trial: the study's TrainConfig + what Optuna sampled -> the task's ``fine_tune``.

The only module that connects ``trainers`` to Ray: :class:`RayReporter` turns each epoch's report into
``ray.tune.report`` with that epoch's checkpoint (Ray keeps the latest). A trial that runs out of GPU
memory even at its smallest micro-batch ends with a last result holding ``OOM_KEY``, which the ledger
records as failed for ``oom``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import ray
from ray import tune

from hpo.config.model_choice import StudyData, trial_data, trial_settings
from hpo.config.spec import ModelChoice
from hpo.result_keys import NODE_KEY, OOM_KEY, RESUME_KEY, STORAGE_FULL_KEY
from hpo.stores.checkpoints import CheckpointStore
from hpo.study._system_metrics import SystemSampler
from trainers import TrainConfig
from trainers.oom import TrainingOutOfMemory
from trainers.tasks import DEFAULT_TASK, load_task


class RayReporter:
    """Reports to Ray Tune, with the epoch's system metrics when sampled; Ray copies the checkpoint folder into the
    trial's storage."""

    def __init__(self, sampler: SystemSampler | None = None) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        self.sampler = sampler

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        system = self.sampler.take() if self.sampler else {}
        try:
            tune.report({**metrics, **system, NODE_KEY: self.node_id}, checkpoint=checkpoint)
        except OSError as err:
            if err.errno == errno.ENOSPC or "No space left" in str(err):  # pyarrow's errors carry no errno
                raise StorageFull(str(err).splitlines()[0]) from None
            raise


class StorageFull(RuntimeError):
    """The checkpoint location has no space left: the trial stops at its previous checkpoint, resumable."""


def run_trial(config: dict[str, Any], *, data: StudyData, trainer: TrainConfig, checkpoints: str,
              models: Mapping[str, ModelChoice] = MappingProxyType({}), task: str = DEFAULT_TASK,
              system_metrics: bool = False) -> None:
    """The Ray trainable. ``task`` names what it fine-tunes for; ``trainer`` holds the study-wide settings;
    ``config`` what Optuna sampled;
    ``checkpoints`` is ``storage.checkpoints``, where an interrupted trial's checkpoint is read from; ``models``
    the choices of a study that searches the model (``data`` then holds each one's prepared rows);
    ``system_metrics``: each epoch's report carries the machine's use (``tracking.system_metrics``)."""
    context = tune.get_context()
    num_threads = max(1, int(context.get_trial_resources().required_resources.get("CPU", 1)))
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(SystemSampler()) if system_metrics else None
        resume_from = None
        if restored := tune.get_checkpoint():  # Ray restarted this trial (FailureConfig): its latest checkpoint
            resume_from = stack.enter_context(restored.as_directory())
        elif config.get(RESUME_KEY):  # an interrupted trial of an earlier attempt (hpo resume)
            resume_from = str(stack.enter_context(CheckpointStore(checkpoints).local_copy(config[RESUME_KEY])))
        settings = trial_settings(trainer, config, models, num_threads=num_threads, resume_from=resume_from)
        try:
            load_task(task).fine_tune(settings, trial_data(data, config), RayReporter(sampler))
        except StorageFull as err:
            # A result, not an exception (which Ray would retry into the same full disk): the ledger keeps the
            # trial resumable and stops the study with the reason.
            print(f"trial could not write its checkpoint: {err}", flush=True)
            tune.report({STORAGE_FULL_KEY: 1.0, "error": str(err)[:500]})
        except TrainingOutOfMemory as err:
            # A result, not an exception: the trial ends as failed for reason "oom" and the study goes on.
            print(f"trial ran out of memory: {err}", flush=True)
            tune.report({OOM_KEY: 1.0, "micro_batch_size": err.micro_batch_size})
