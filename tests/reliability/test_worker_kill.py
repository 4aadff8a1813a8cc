"""A trial's worker process dies (SIGKILL, as the kernel's OOM killer or a lost node would): Ray restarts the
trial from its latest checkpoint (`resources.max_retries`), and every store counts it once with each epoch once."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from mlflow import MlflowClient

from hpo.states import TrialState
from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, wait_for, with_overrides

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS, EPOCHS = "worker_kill", 2, 4


def _trial_workers(driver: Driver) -> list[psutil.Process]:
    """The Ray worker processes running a trial (Tune's function trainable actor), among the driver's family."""
    found = []
    for child in psutil.Process(driver.proc.pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_killed_worker_restarts_its_trial_from_the_latest_checkpoint(tmp_path, sst2_dir, capsys):
    registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    args = with_overrides(TINY_SWEEP, f"study.name={NAME}", f"study.num_samples={TRIALS}",
                          f"trainer.max_epochs={EPOCHS}")
    driver = Driver(["sweep", *args], tmp_path, sst2_dir)
    wait_for(driver, registry_url, NAME, lambda trials: trials[0].epochs >= 1)
    workers = _trial_workers(driver)
    assert workers, "no trial worker found"
    epochs_at_kill = Registry.open(registry_url).trial(NAME, 0).epochs
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    assert driver.wait(timeout=600) == 0, driver.output()[-3000:]

    output = driver.output()
    assert "trial 0: its worker died; restarting it after epoch" in output, output[-3000:]
    registry = Registry.open(registry_url)
    trials = registry.trials(NAME)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * TRIALS, "counted once, finished"
    killed = trials[0]
    assert sorted(killed.values) == list(range(1, EPOCHS + 1))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(killed.mlflow_run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), "every epoch logged once"
    run = client.get_run(killed.mlflow_run_id)
    assert run.data.tags["hpo.retries"] == "1" and run.info.status == "FINISHED"
    resumed_after = int(run.data.tags["hpo.resumed_after_epoch"])
    assert resumed_after >= 1, "restarted from its checkpoint, not from scratch"
    experiment = client.get_experiment_by_name(NAME)
    assert len(client.search_runs([experiment.experiment_id])) == TRIALS + 1, "no second run for the restart"
    with capsys.disabled():
        print(f"\n[worker kill] killed trial 0's worker after {epochs_at_kill} epoch(s); it resumed after epoch "
              f"{resumed_after} and finished "
              f"{EPOCHS} epochs, each logged once; {TRIALS} trials, {TRIALS + 1} MLflow runs")
