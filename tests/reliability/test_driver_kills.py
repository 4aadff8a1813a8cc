"""The kill story: one study (5 trials, 2 at a time, ASHA) whose processes are SIGKILLed again and again.
Deterministic phases first, then the seeded random ones:

0. the trials' Ray worker processes SIGKILLed (as the kernel's OOM killer or a lost node would) once an epoch is
   recorded: Ray restarts each trial from its latest checkpoint (`resources.max_retries`), the same trial in every
   store (no second MLflow run), tagged `hpo.retries`;
1. the driver SIGKILLed mid-trial (a trial past its first epoch, before its last);
2. SIGKILL just after a trial boundary (a trial has finished since the resume and a new one has not reported);
3. two SIGKILLs at seeded random moments (0-1 more epochs on, then up to 1.5 s: mid-epoch, mid-checkpoint,
   between trials, or while the new driver starts up);
4. the last `hpo resume` completes it: exactly N trials in every store, each MLflow run once, every epoch once,
   nothing left RUNNING, and the trial killed mid-run went on from its checkpoint.

After every driver kill but the last, `hpo resume` continues the study.

Every phase's kill must land (the study is sized so that it cannot end first); a failure names its phase.
The driver killed while it closes its study is its own short test below.
"""

from __future__ import annotations

import random
import re
import time

import optuna
import pytest
from mlflow import MlflowClient

from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, processes_with, study_counts, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS, EPOCHS, RANDOM_KILLS = "driver_kills", 5, 3, 2


def test_sigkill_mid_trial_at_a_trial_boundary_and_at_random_moments_then_resume(tmp_path, sst2_dir, capsys):
    url, rng = f"sqlite:///{tmp_path}/registry.db", random.Random(11)
    args = with_overrides(TINY_SWEEP, "scheduler=asha", "study.max_concurrent=2", f"trainer.max_epochs={EPOCHS}",
                          f"study.name={NAME}", f"study.num_samples={TRIALS}", f"storage.root={tmp_path}")
    moments: list[str] = []

    def kill(driver: Driver, phase: str) -> None:
        assert driver.proc.poll() is None, f"{phase}: the driver ended before its kill:\n{driver.output()[-3000:]}"
        state = Registry(url).trials(NAME)
        moments.append(f"{phase}: {sum(t.state.finished for t in state)} finished/"
                       f"{sum(t.epochs for t in state)} epochs")
        driver.sigkill()

    # 0. the trials' workers (Tune's function-trainable actors, among the driver's processes)
    driver = Driver(["sweep", *args], tmp_path, sst2_dir)
    wait_for(driver, url, NAME, lambda ts: any(t.epochs >= 1 for t in ts))
    driver.remember_children()
    workers = processes_with(driver.family, "ImplicitFunc")
    assert workers, "0: no trial worker found"
    for worker in workers:
        worker.kill()
    wait_for(driver, url, NAME, lambda _: "its worker died; restarting it after epoch" in driver.output())
    restarted = sorted({int(n) for n in re.findall(r"trial (\d+): its worker died", driver.output())})
    moments.append(f"0 workers: {len(workers)} killed, trial(s) {restarted} restarted")

    # 1. mid-trial
    mid = wait_for(driver, url, NAME, lambda ts: any(t.state == "running" and 1 <= t.epochs < EPOCHS for t in ts))
    interrupted = next(t for t in mid if t.state == "running" and t.epochs >= 1)
    kill(driver, "1 mid-trial")

    # 2. at a trial boundary: one more trial finished since the resume, a new one started and not yet reported
    driver = Driver(["resume", NAME], tmp_path, sst2_dir)
    done_before = sum(t.state.finished for t in mid)
    wait_for(driver, url, NAME, lambda ts: sum(t.state.finished for t in ts) > done_before
             and any(t.state == "running" and t.epochs == 0 for t in ts)
             and sum(t.state.finished for t in ts) < TRIALS - 1)
    assert "resuming:" in driver.output(), "2 boundary: the resume said what it resumes"
    assert f"trial {interrupted.number} resumed after epoch" in driver.output(), (
        "1: the trial killed mid-run continued from its checkpoint, not from scratch")
    kill(driver, "2 boundary")

    # 3. seeded random moments
    for k in range(RANDOM_KILLS):
        driver = Driver(["resume", NAME], tmp_path, sst2_dir)
        target = sum(t.epochs for t in Registry(url).trials(NAME)) + rng.choice([0, 1])
        wait_for(driver, url, NAME, lambda ts, target=target: sum(t.epochs for t in ts) >= target)
        deadline = time.time() + rng.uniform(0.0, 1.5)
        while time.time() < deadline and driver.proc.poll() is None:
            time.sleep(0.1)
        kill(driver, f"3 random #{k + 1}")

    # 4. the last resume completes the study
    final = hpo(["resume", NAME], tmp_path, sst2_dir)  # nobody kills it: in this process
    assert final.returncode == 0, f"4 final resume:\n{final.stdout[-3000:]}{final.stderr[-3000:]}"
    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", NAME)
    assert sorted(s["registry"]) == list(range(TRIALS)), "4: exactly N trials"
    c = study_counts(tmp_path, NAME)
    assert len(c["mlflow_children"]) == TRIALS and len(c["mlflow_parents"]) == 1, "4: no duplicate MLflow run"
    assert not [t for t in c["optuna_trials"] if t.state == optuna.trial.TrialState.RUNNING], "4: none RUNNING"
    assert {r.info.status for r in c["mlflow_children"] + c["mlflow_parents"]} == {"FINISHED"}
    assert c["record"].status == "completed" and all(t.state.finished for t in c["registry_trials"])
    runs = {int(r.data.tags["hpo.optuna_trial_number"]): r for r in c["mlflow_children"]}
    for number in restarted:
        assert int(runs[number].data.tags.get("hpo.retries", 0)) >= 1, f"0: trial {number}'s restart is tagged"
    with capsys.disabled():
        print(f"\n[driver kills] {len(moments)} SIGKILLs: {'; '.join(moments)}; after the last resume: "
              f"{len(c['registry_trials'])} trials in each store, {len(c['mlflow_children'])} trial runs + 1 study "
              "run, none RUNNING")


def test_resume_closes_what_a_driver_killed_while_closing_its_study_left_open(tmp_path, sst2_dir):
    """The registry records a study's end first; a driver killed right after leaves the MLflow study run open and
    the report unwritten, which `hpo resume` completes instead of only saying "already completed"."""
    args = with_overrides(TINY_SWEEP, "study.name=closing", "study.num_samples=1", "trainer.max_epochs=1",
                          "data.train_limit=200", "data.validation_limit=100", f"storage.root={tmp_path}")
    made = hpo(["sweep", *args], tmp_path, sst2_dir)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
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
