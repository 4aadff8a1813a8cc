"""A study's lifecycle from other shells, with real processes, as one study in order:

1. `hpo stop` from another shell while trial 0 runs: the driver stops the study gracefully (exit 0), trial 0
   `interrupted`, the study `stopped` with the reason in the registry and MLflow, the stores agreeing. The stop lands
   mid-trial by construction, not by timing: trial 0 has 12 epochs of 200 rows and the stop is sent after its first,
   so many epochs are left when the driver reads it (every registry.heartbeat_s=1).
2. `hpo resume`; while it runs, a second driver for the study (`hpo resume`, and `hpo sweep` of the same name, both
   real processes at once) is refused, naming the running driver's pid.
3. That driver SIGKILLed: `hpo list` says its driver is gone.
4. `hpo resume` takes the study over and completes it: every store agrees, one MLflow run per trial and one
   study run, `hpo status` says completed.

The drivers are `hpo` subprocesses on their own local Ray (the local path, as a user runs it). SIGKILLs at every
other moment are tests/reliability/test_driver_kills.py's story.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, study_counts, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a whole study
NAME, TRIALS = "lifecycle", 2
LONG_TRIALS = with_overrides(TINY_SWEEP, "scheduler=fifo", "data.train_limit=200", "data.validation_limit=100",
                             "trainer.max_epochs=12", f"study.name={NAME}", f"study.num_samples={TRIALS}")


def test_stop_then_one_driver_per_study_then_a_stale_drivers_study_taken_over(tmp_path, sst2_dir):
    url = f"sqlite:///{tmp_path}/registry.db"
    registry_url, tracking_uri = url, f"sqlite:///{tmp_path}/mlflow.db"

    # 1. hpo stop from another shell
    sweep = Driver(["sweep", *LONG_TRIALS, f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    wait_for(sweep, url, NAME, lambda ts: ts[0].state == "running" and ts[0].epochs >= 1)
    stop = hpo(["stop", NAME, "--wait", "120"], tmp_path, sst2_dir)
    assert stop.returncode == 0, f"1: {stop.stderr}"
    assert sweep.wait(timeout=120) == 0, f"1: {sweep.output()[-3000:]}"
    c = study_counts(tmp_path, NAME)
    assert c["record"].status == "stopped" and "hpo stop" in c["record"].stop_reason, f"1: {c['record'].status}"
    assert [t.state for t in c["registry_trials"]][0] == "interrupted", "1: the stop landed mid-trial"
    assert c["mlflow_parents"][0].data.tags["hpo.stop_reason"] == c["record"].stop_reason
    assert_stores_agree(registry_url, tracking_uri, NAME)

    # 2. one driver per study
    resume = Driver(["resume", NAME], tmp_path, sst2_dir)
    try:
        wait_for(resume, url, NAME, lambda ts: any(t.state == "running" for t in ts))
        with ThreadPoolExecutor(2) as pool:  # both while the resumed driver is surely alive
            second = pool.submit(hpo, ["resume", NAME], tmp_path, sst2_dir, process=True)
            again = pool.submit(hpo, ["sweep", *LONG_TRIALS, f"storage.root={tmp_path}"], tmp_path, sst2_dir,
                                process=True)
            second, again = second.result(), again.result()
        assert resume.proc.poll() is None, "2: the driver must still be running for this phase to mean anything"
        assert second.returncode == 2 and f"pid {resume.proc.pid}" in second.stderr, f"2: {second.stderr}"
        assert again.returncode == 2 and "being driven by" in again.stderr, f"2: {again.stderr}"
    finally:
        # 3. the driver SIGKILLed: its study is left with a driver that is gone
        resume.sigkill()
    listing = hpo(["list"], tmp_path, sst2_dir)
    assert "driver gone" in listing.stdout, f"3: {listing.stdout}"

    # 4. taken over and completed
    takeover = hpo(["resume", NAME], tmp_path, sst2_dir, timeout=600)
    assert takeover.returncode == 0, f"4: {takeover.stdout[-3000:]}{takeover.stderr[-3000:]}"
    s = assert_stores_agree(registry_url, tracking_uri, NAME)
    assert sorted(s["mlflow"]) == list(range(TRIALS)), "4: every trial has exactly one MLflow run"
    c = study_counts(tmp_path, NAME)
    assert len(c["mlflow_parents"]) == 1, "4: the same study run is reused"
    assert not [t for t in c["optuna_trials"] if t.state == optuna.trial.TrialState.RUNNING]
    assert {r.info.status for r in c["mlflow_children"] + c["mlflow_parents"]} == {"FINISHED"}
    assert c["record"].status == "completed" and all(t.state.finished for t in c["registry_trials"])
    status = hpo(["status", NAME], tmp_path, sst2_dir)
    assert status.returncode == 0 and f"study {NAME}: completed" in status.stdout, status.stdout + status.stderr
