"""A whole study whose trials are DDP groups (``resources.workers_per_trial=2``: Ray Train's TorchTrainer in each Ray
Tune trial, two gloo workers of one CPU each on the local Ray): ASHA prunes (and the next group gets the pruned one's
workers), the three stores agree, a worker SIGKILLed mid-epoch is restarted with its group from the trial's latest
checkpoint, once, and the driver SIGKILLed after that is resumed (``hpo resume``): the group trial continues from
its checkpoint. No epoch is trained or recorded twice, none is lost."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from mlflow import MlflowClient

from tests.helpers.lifecycle import TINY_SWEEP, Driver, processes_with, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a whole study
# tiny BERT's accuracy on 600 rows ties at the majority class for every config, and ASHA stops nothing among ties:
# the validation loss, which differs, is the objective
GROUPS = with_overrides(TINY_SWEEP, "scheduler=asha", "resources.workers_per_trial=2", "data.train_limit=600",
                        "data.validation_limit=100", "search.first_trial=sampler", "study.metric=val_loss",
                        "study.mode=min", "trainer.max_epochs=4")


def _train_workers(driver: Driver) -> list[psutil.Process]:
    driver.remember_children()
    return processes_with(driver.family, "RayTrainWorker")


def test_two_worker_trials_prune_agree_and_survive_a_killed_worker_and_driver(tmp_path, sst2_dir):
    name, url = "groups", f"sqlite:///{tmp_path}/registry.db"
    # 8 trials: ASHA stops a trial below the median of those before it at a rung. None of 5 was stopped once (each
    # later draw beat the median before it; the kill falls in trial 0, which the resumed driver's ASHA never sees
    # at the first rung); that each of 6 or 7 later trials beats the median before it is 1 in 60 to 1 in 100
    sweep = Driver(["sweep", *GROUPS, f"study.name={name}", "study.num_samples=8", f"storage.root={tmp_path}"],
                   tmp_path, sst2_dir)
    # the first trial: ASHA has no one to compare it with, so it runs its 4 epochs unless a kill loses them
    victim = wait_for(sweep, url, name, lambda ts: ts[0].state == "running" and ts[0].epochs >= 1, timeout=300)[0]
    workers = _train_workers(sweep)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    os.kill(workers[-1].pid, signal.SIGKILL)
    # restarted by Ray Train from its checkpoint, it trains on; then the driver dies mid-trial
    wait_for(sweep, url, name, lambda ts: ts[0].state == "running" and ts[0].epochs >= 2, timeout=300)
    sweep.sigkill()
    assert "trial 0: a worker of its group died; Ray Train restarted the group after epoch" in sweep.output()

    resume = Driver(["resume", name], tmp_path, sst2_dir)
    assert resume.wait(timeout=900) == 0, resume.output()[-3000:]
    # Ray Train runs ahead of the driver: the checkpoint it continues from may hold epochs the driver never recorded
    assert f"trial {victim.number} resumed after epoch" in resume.output()
    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", name, feedback="pruned")
    states = {n: t.state for n, t in s["registry"].items()}
    assert "pruned" in states.values(), states  # and the groups after a pruned one got its workers
    survivor = s["registry"][victim.number]
    assert survivor.state == "completed" and survivor.epochs == 4, "it went on after its worker and its driver died"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for number, trial in s["registry"].items():
        steps = sorted(m.step for m in client.get_metric_history(s["mlflow"][number].info.run_id, "train_loss"))
        assert steps == list(range(1, trial.epochs + 1)), f"trial {number}: each epoch trained and recorded once"
    assert "cluster: 1 node(s), room for 2 worker(s)" in sweep.output()
