"""Study lifecycle with real processes: SIGKILL the driver and resume, stop from another shell,
one driver per study. Every driver is an `hpo` subprocess with its own local Ray. After every resume
(and after the stop) the registry, Optuna and MLflow agree on every trial (tests/stores.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, study_counts, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

NUM_TRIALS, EPOCHS = 3, 3
ASHA = with_overrides(TINY_SWEEP, "scheduler=asha")
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies


def _assert_study_whole(root, name, num_trials=NUM_TRIALS):
    s = assert_stores_agree(f"sqlite:///{root}/registry.db", f"sqlite:///{root}/mlflow.db", name)
    assert sorted(s["mlflow"]) == list(range(num_trials)), "every trial has exactly one MLflow run"
    c = study_counts(root, name)
    assert len(c["mlflow_parents"]) == 1, "the same parent run is reused"
    assert not [t for t in c["optuna_trials"] if t.state == optuna.trial.TrialState.RUNNING]
    assert {r.info.status for r in c["mlflow_children"] + c["mlflow_parents"]} == {"FINISHED"}
    assert c["record"].status == "completed"
    assert all(t.state.finished for t in c["registry_trials"])
    return c


def test_sigkill_mid_trial_and_between_trials_then_resume(tmp_path, sst2_dir, capsys):
    name, url = "killed", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", *ASHA, f"study.name={name}", f"study.num_samples={NUM_TRIALS}",
                    f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    mid = wait_for(sweep, url, name, lambda ts: any(t.state == "running" and 1 <= t.epochs < EPOCHS for t in ts))
    sweep.sigkill()
    interrupted = next(t for t in mid if t.state == "running" and t.epochs >= 1)

    resume = Driver(["resume", name], tmp_path, sst2_dir)
    done_before = sum(t.state.finished for t in mid)

    def between_trials(ts):
        finished = sum(t.state.finished for t in ts)
        return finished > done_before + 0 and all(t.epochs == 0 for t in ts if t.state == "running") \
            and finished < NUM_TRIALS

    between = wait_for(resume, url, name, between_trials)
    resume.sigkill()
    assert "resuming:" in resume.output()

    final = Driver(["resume", name], tmp_path, sst2_dir)
    assert final.wait() == 0, final.output()[-3000:]
    c = _assert_study_whole(tmp_path, name)

    run = next(r for r in c["mlflow_children"] if r.data.tags["hpo.optuna_trial_number"] == str(interrupted.number))
    assert int(run.data.tags["hpo.resumed_after_epoch"]) >= 1, "the interrupted trial continued, not restarted"
    with capsys.disabled():
        print(f"\n[kill test] mid-trial kill: {len(mid)} trial(s) started, {done_before} finished, trial "
              f"{interrupted.number} at epoch {interrupted.epochs}; between-trials kill: "
              f"{sum(t.state.finished for t in between)} finished; after resume: "
              f"{len(c['optuna_trials'])} Optuna trials, {len(c['registry_trials'])} registry trials, "
              f"{len(c['mlflow_children'])} MLflow child runs + {len(c['mlflow_parents'])} parent")


def test_stop_from_another_process_then_resume(tmp_path, sst2_dir):
    name, url = "stopped", f"sqlite:///{tmp_path}/registry.db"
    slower = with_overrides(ASHA, "data.train_limit=4000")  # a trial still runs when the stop lands
    sweep = Driver(["sweep", *slower, f"study.name={name}", "study.num_samples=2",
                    f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    wait_for(sweep, url, name, lambda ts: any(t.state == "running" and t.epochs >= 1 for t in ts))
    stop = hpo(["stop", name, "--wait", "120"], tmp_path, sst2_dir)
    assert stop.returncode == 0, stop.stderr
    assert sweep.wait(timeout=120) == 0, sweep.output()[-3000:]
    c = study_counts(tmp_path, name)
    assert c["record"].status == "stopped" and "hpo stop" in c["record"].stop_reason
    assert [t.state for t in c["registry_trials"]].count("interrupted") == 1
    assert c["mlflow_parents"][0].data.tags["hpo.stop_reason"] == c["record"].stop_reason
    assert_stores_agree(f"sqlite:///{tmp_path}/registry.db", f"sqlite:///{tmp_path}/mlflow.db", name)

    final = Driver(["resume", name], tmp_path, sst2_dir)
    assert final.wait() == 0, final.output()[-3000:]
    _assert_study_whole(tmp_path, name, num_trials=2)
    status = hpo(["status", name], tmp_path, sst2_dir)
    assert status.returncode == 0 and f"study {name}: completed" in status.stdout


def test_one_driver_per_study_and_stale_takeover(tmp_path, sst2_dir):
    name, url = "guarded", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", *TINY_SWEEP, f"study.name={name}", "study.num_samples=2",
                    f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    try:
        wait_for(sweep, url, name, lambda ts: any(t.state == "running" for t in ts))
        with ThreadPoolExecutor(2) as pool:  # both while the first driver is surely alive
            second = pool.submit(hpo, ["resume", name], tmp_path, sst2_dir)
            again = pool.submit(hpo, ["sweep", *TINY_SWEEP, f"study.name={name}", f"storage.root={tmp_path}"],
                                tmp_path, sst2_dir)
            second, again = second.result(), again.result()
        assert sweep.proc.poll() is None, "the first driver must still be running for this test to mean anything"
        assert second.returncode == 2 and f"pid {sweep.proc.pid}" in second.stderr, second.stderr
        assert again.returncode == 2 and "being driven by" in again.stderr, again.stderr
    finally:
        sweep.sigkill()
    listing = hpo(["list"], tmp_path, sst2_dir)
    assert "driver gone" in listing.stdout
    takeover = Driver(["resume", name], tmp_path, sst2_dir)
    assert takeover.wait() == 0, takeover.output()[-3000:]
    assert study_counts(tmp_path, name)["record"].status == "completed"
