"""A whole study whose trials are DDP groups (``resources.workers_per_trial=2``: Ray Train's TorchTrainer in each Ray
Tune trial, two gloo workers of one CPU each on the local Ray): ASHA prunes (and the next group gets the pruned one's
workers), the three stores agree, a worker SIGKILLed mid-epoch is restarted with its group from the trial's latest
checkpoint, once, and a driver SIGKILLed mid-trial is resumed (``hpo resume``): the interrupted group trial
continues from its checkpoint. No epoch is trained twice."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from mlflow import MlflowClient

from tests.helpers.lifecycle import TINY_SWEEP, Driver, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a whole study
# the sampler's own draws (TINY_SWEEP's LRs, up to 1e-3): the portfolio's are too low for tiny BERT to learn, and
# ASHA stops nothing among ties
GROUPS = with_overrides(TINY_SWEEP, "scheduler=asha", "resources.workers_per_trial=2", "data.train_limit=600",
                        "data.validation_limit=100", "search.first_trial=sampler")


def _train_workers(driver: Driver) -> list[psutil.Process]:
    driver.remember_children()
    found = []
    for pid in driver.family:
        try:
            process = psutil.Process(pid)
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def test_two_worker_trials_prune_agree_and_survive_a_killed_worker_and_driver(tmp_path, sst2_dir):
    name, url = "groups", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", *GROUPS, f"study.name={name}", "study.num_samples=5", "registry.heartbeat_s=1",
                    f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    # the first trial: ASHA has no one to compare it with, so it runs its 3 epochs unless the kill loses them
    victim = wait_for(sweep, url, name, lambda ts: ts[0].state == "running" and ts[0].epochs >= 1, timeout=300)[0]
    workers = _train_workers(sweep)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    os.kill(workers[-1].pid, signal.SIGKILL)
    # a later group mid-trial: the earlier groups' workers were freed (pruned ones too), then the driver dies
    mid = wait_for(sweep, url, name, lambda ts: any(t.number > victim.number + 1 and t.state == "running"
                                                    and t.epochs >= 1 for t in ts), timeout=900)
    sweep.sigkill()
    interrupted = next(t for t in mid if t.number > victim.number + 1 and t.state == "running" and t.epochs >= 1)

    resume = Driver(["resume", name], tmp_path, sst2_dir)
    assert resume.wait(timeout=900) == 0, resume.output()[-3000:]
    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", name)
    states = {n: t.state for n, t in s["registry"].items()}
    assert "pruned" in states.values(), states
    killed = s["registry"][victim.number]
    assert killed.state == "completed" and killed.epochs == 3, "it went on after its worker died"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for number, trial in s["registry"].items():
        steps = sorted(m.step for m in client.get_metric_history(s["mlflow"][number].info.run_id, "train_loss"))
        assert steps == list(range(1, trial.epochs + 1)), f"trial {number}: each epoch trained once"
    resumed = s["registry"][interrupted.number]
    if resumed.epochs > interrupted.epochs:  # not pruned at the epoch the driver died in
        after = s["mlflow"][interrupted.number].data.tags.get("hpo.resumed_after_epoch")
        assert after is not None and int(after) >= 1, "the interrupted group continued from its checkpoint"
    assert "cluster: 1 node(s), room for 2 worker(s)" in sweep.output()
