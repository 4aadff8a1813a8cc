"""The study's driver SIGKILLed at 5 random moments of one study (2 trials at a time, ASHA), `hpo resume` after
each (a kill may land while the driver closes the study: `hpo resume` then closes what it left open): in the
end exactly N trials in every store, each MLflow run once, every epoch once, nothing left RUNNING."""

from __future__ import annotations

import random
import time

import optuna
import pytest

from hpo.states import StudyStatus
from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, study_counts, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS, KILLS = "driver_kills", 4, 5


def test_five_driver_kills_at_random_moments_then_resume(tmp_path, sst2_dir, capsys):
    url, rng = f"sqlite:///{tmp_path}/registry.db", random.Random(11)
    args = with_overrides(TINY_SWEEP, "scheduler=asha", "study.max_concurrent=2", f"study.name={NAME}",
                          f"study.num_samples={TRIALS}", f"storage.root={tmp_path}")
    driver, moments, epochs = Driver(["sweep", *args], tmp_path, sst2_dir), [], 0
    for _ in range(KILLS):
        # A random moment: after 0-2 more epochs than at the last kill (0: while the new driver starts up),
        # then up to 1.5 s on (mid-epoch, mid-checkpoint, between trials).
        target = epochs + rng.choice([0, 1, 1, 2])
        try:
            wait_for(driver, url, NAME, lambda trials, target=target: sum(t.epochs for t in trials) >= target)
        except AssertionError:
            # The last kill hit a driver that had already recorded the study's end: `hpo resume` closed what it
            # left open (its MLflow run, its report) and exited. Checked below like any other end.
            if Registry(url).get(NAME).status != StudyStatus.COMPLETED:
                raise
            break
        delay = rng.uniform(0.0, 1.5)
        deadline = time.time() + delay
        while time.time() < deadline and driver.proc.poll() is None:
            driver.remember_children()
            time.sleep(0.1)
        if driver.proc.poll() is not None:  # it finished before this moment: nothing left to kill
            break
        state = Registry(url).trials(NAME)
        epochs = sum(t.epochs for t in state)
        moments.append(f"{sum(t.state.finished for t in state)} finished/{epochs} epochs")
        driver.sigkill()
        driver = Driver(["resume", NAME], tmp_path, sst2_dir)
    assert driver.wait(timeout=600) == 0, driver.output()[-3000:]

    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", NAME)
    assert sorted(s["registry"]) == list(range(TRIALS)), "exactly N trials"
    c = study_counts(tmp_path, NAME)
    assert len(c["mlflow_children"]) == TRIALS and len(c["mlflow_parents"]) == 1, "no duplicate MLflow run"
    assert not [t for t in c["optuna_trials"] if t.state == optuna.trial.TrialState.RUNNING]
    assert {r.info.status for r in c["mlflow_children"] + c["mlflow_parents"]} == {"FINISHED"}
    assert c["record"].status == "completed" and all(t.state.finished for t in c["registry_trials"])
    # Where the study ends among the random moments depends on timing: at least 3 of the 5 kills must land.
    assert len(moments) >= 3, f"the study ended before 3 kills: {moments}"
    with capsys.disabled():
        print(f"\n[driver kills] {len(moments)} SIGKILLs at {', '.join(moments)}; after the last resume: "
              f"{len(c['registry_trials'])} trials in each store, {len(c['mlflow_children'])} trial runs + 1 study "
              "run, none RUNNING")


def test_resume_closes_what_a_driver_killed_while_closing_its_study_left_open(tmp_path, sst2_dir):
    """The registry records a study's end first; a driver killed right after leaves the MLflow study run open and
    the report unwritten, which `hpo resume` completes instead of only saying "already completed"."""
    from mlflow import MlflowClient

    args = with_overrides(TINY_SWEEP, "study.name=closing", "study.num_samples=1", "trainer.max_epochs=1",
                          f"storage.root={tmp_path}")
    assert hpo(["sweep", *args], tmp_path, sst2_dir).returncode == 0
    record = Registry(f"sqlite:///{tmp_path}/registry.db").get("closing")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    client.update_run(record.mlflow_parent_run_id, status="RUNNING")  # as the SIGKILLed driver left it
    report = tmp_path / "closing" / "report" / "report.md"
    report.unlink()

    resumed = hpo(["resume", "closing"], tmp_path, sst2_dir)
    assert resumed.returncode == 0 and "now closed" in resumed.stdout, resumed.stdout + resumed.stderr
    assert client.get_run(record.mlflow_parent_run_id).info.status == "FINISHED" and report.exists()
    again = hpo(["resume", "closing"], tmp_path, sst2_dir)
    assert "now closed" not in again.stdout, "nothing left to close the second time"
