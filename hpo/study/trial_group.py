"""A trial larger than one worker (``resources.workers_per_trial`` > 1): a DDP group run by Ray Train, seen by Ray
Tune as one trial.

The Tune trial itself holds no CPU or GPU (a MiB of memory: Tune needs a bundle): it starts Ray Train's
``TorchTrainer``, whose N workers each take ``resources.cpu`` and ``resources.gpu`` on any node and form the
process group (gloo on CPUs, NCCL on GPUs) that :mod:`trainers.distributed` trains in, with the same model and
metrics as one worker. Rank 0's reports reach Tune through Ray's ``TuneReportCallback``: each epoch's metrics with
``checkpoint_path``, the checkpoint Ray Train stored (the ledger records it as a one-worker trial's). A worker that
dies is restarted with its group from the latest checkpoint by Ray Train (``resources.max_retries``); a driver that
dies is resumed from the ledger's record (``hpo resume``), as a one-worker trial is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from hpo.config.model_choice import StudyData, trial_data, trial_settings
from hpo.config.spec import ModelChoice, ResourcesSpec
from hpo.result_keys import GROUP_RESTART_KEY, NODE_KEY, RESUME_KEY
from hpo.stores.checkpoints import CheckpointStore
from hpo.study._system_metrics import SystemSampler
from trainers import TrainConfig
from trainers.checkpoint import read_summary
from trainers.tasks import DEFAULT_TASK, load_task

# The Tune trial only waits on its group: no CPU, so the workers get them all (Tune needs a non-empty bundle).
GROUP_TRIAL_BUNDLE: dict[str, float] = {"memory": 2**20}


class GroupReporter:
    """Reports each epoch to Ray Train from every worker (Train waits for all); rank 0's carry the checkpoint.
    ``restarted_after``: the epoch Ray Train restarted the group from (a worker died), said in the first report,
    since Tune, which tells the ledger of a one-worker trial's restart, never sees a group's."""

    def __init__(self, sampler: SystemSampler | None, restarted_after: int | None) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        self.sampler = sampler
        self.restart = {} if restarted_after is None else {GROUP_RESTART_KEY: restarted_after}

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        system = self.sampler.take() if self.sampler else {}
        ray.train.report({**metrics, **system, **self.restart, NODE_KEY: self.node_id}, checkpoint=checkpoint)
        self.restart = {}


def run_trial_group(config: dict[str, Any], *, data: StudyData, trainer: TrainConfig, checkpoints: str,
                    resources: ResourcesSpec, group_storage: str,
                    models: Mapping[str, ModelChoice] = MappingProxyType({}), task: str = DEFAULT_TASK,
                    system_metrics: bool = False) -> None:
    """The Ray trainable of a group trial: the arguments of :func:`hpo.study.trial.run_trial`, plus the per-worker
    ``resources`` and ``group_storage``, where Ray Train keeps the group's checkpoints."""
    loop = {"config": config, "data": ray.put(data), "trainer": trainer, "checkpoints": checkpoints,
            "models": dict(models), "task": task, "system_metrics": system_metrics,
            "threads": max(1, int(resources.cpu))}
    per_worker = {"CPU": resources.cpu} | ({"GPU": resources.gpu} if resources.gpu else {})
    TorchTrainer(
        _worker,
        train_loop_config=loop,
        scaling_config=ray.train.ScalingConfig(num_workers=resources.workers_per_trial, use_gpu=resources.gpu > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=f"trial_{tune.get_context().get_trial_id()}", storage_path=group_storage,
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # Train V2's callback; the stubs are V1's
            failure_config=ray.train.FailureConfig(max_failures=resources.max_retries),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    ).fit()


def _worker(loop: dict[str, Any]) -> None:
    """One worker of the group: the trainer's ``fine_tune`` in the process group Ray Train set up."""
    config = loop["config"]
    with contextlib.ExitStack() as stack:
        chief = ray.train.get_context().get_world_rank() == 0
        sampler = stack.enter_context(SystemSampler()) if loop["system_metrics"] and chief else None
        resume_from, restarted_after = None, None
        if restored := ray.train.get_checkpoint():  # Ray Train restarted the group (a worker died): its latest
            resume_from = stack.enter_context(restored.as_directory())
            restarted_after = int(read_summary(resume_from)["epoch"])
        elif config.get(RESUME_KEY):  # an interrupted trial of an earlier attempt (hpo resume)
            resume_from = str(stack.enter_context(CheckpointStore(loop["checkpoints"]).local_copy(config[RESUME_KEY])))
        settings = trial_settings(loop["trainer"], config, loop["models"], num_threads=loop["threads"],
                                  resume_from=resume_from)
        load_task(loop["task"]).fine_tune(settings, trial_data(ray.get(loop["data"]), config),
                                                GroupReporter(sampler, restarted_after))
