"""The study's driver SIGKILLed at 5 random moments of one study (2 trials at a time, ASHA), `hpo resume` after
each: in the end exactly N trials in every store, each MLflow run once, every epoch once, nothing left RUNNING."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import optuna
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # the lifecycle helpers in tests/
from lifecycle import TINY_SWEEP, Driver, study_counts, wait_for, with_overrides  # noqa: E402
from stores import assert_stores_agree  # noqa: E402

from hpo.registry import Registry  # noqa: E402

pytestmark = pytest.mark.integration
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
        wait_for(driver, url, NAME, lambda trials, target=target: sum(t.epochs for t in trials) >= target)
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
    assert len(moments) == KILLS, f"the study ended before {KILLS} kills: {moments}"
    with capsys.disabled():
        print(f"\n[driver kills] {len(moments)} SIGKILLs at {', '.join(moments)}; after the last resume: "
              f"{len(c['registry_trials'])} trials in each store, {len(c['mlflow_children'])} trial runs + 1 study "
              "run, none RUNNING")
