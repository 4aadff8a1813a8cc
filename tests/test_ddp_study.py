"""A whole study whose trials are DDP groups (``resources.workers_per_trial=2``: Ray Train's TorchTrainer in each Ray
Tune trial, two gloo workers of one CPU each on the local Ray): ASHA prunes, the three stores agree, and a worker
SIGKILLed mid-epoch is restarted with its group from the trial's latest checkpoint, once (no epoch trained twice)."""

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


def test_two_worker_trials_prune_agree_and_survive_a_killed_worker(tmp_path, sst2_dir):
    name, url = "groups", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", *GROUPS, f"study.name={name}", "study.num_samples=4", f"storage.root={tmp_path}"],
                   tmp_path, sst2_dir)
    # the first trial: ASHA has no one to compare it with, so it runs its 3 epochs unless the kill loses them
    victim = wait_for(sweep, url, name, lambda ts: ts[0].state == "running" and ts[0].epochs >= 1, timeout=300)[0]
    workers = _train_workers(sweep)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    os.kill(workers[-1].pid, signal.SIGKILL)
    assert sweep.wait(timeout=900) == 0, sweep.output()[-3000:]

    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", name)
    states = {n: t.state for n, t in s["registry"].items()}
    assert "pruned" in states.values(), states
    killed = s["registry"][victim.number]
    assert killed.state == "completed" and killed.epochs == 3, "it went on after its worker died"
    history = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(s["mlflow"][victim.number].info.run_id,
                                                                                "train_loss")
    assert sorted(m.step for m in history) == list(range(1, killed.epochs + 1)), "each epoch trained once"
    assert "cluster: 1 node(s), room for 2 worker(s)" in sweep.output()
