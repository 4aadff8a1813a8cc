"""task=custom with real processes: the example's plain PyTorch function as a whole study, SIGKILLed mid-study and
resumed (every trial once in each store, the stores agree), and functions that raise or never report the study's
metric (their trials fail with the reason in MLflow, the study goes on)."""

from __future__ import annotations

import pytest

from hpo.config.resolvers import PROJECT_ROOT
from hpo.states import TrialState
from tests.helpers.lifecycle import Driver, hpo, study_counts, wait_for
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NUM_TRIALS, EPOCHS = 4, 4
FLAKY = '''
def train(params, trial):
    if params["mode"] == "raise":
        raise ValueError("boom from the user's code")
    trial.report({"score": 1.0} if params["mode"] == "ok" else {"other": 1.0})
'''


@pytest.fixture
def on_pythonpath(monkeypatch, tmp_path):
    """The user's modules importable as from their project: the repository (examples/) and ``tmp_path``."""
    monkeypatch.setenv("PYTHONPATH", f"{PROJECT_ROOT}:{tmp_path}")


def test_the_example_function_survives_sigkill_and_resumes_into_agreeing_stores(tmp_path, sst2_dir,
                                                                                on_pythonpath, capsys):
    name, url = "custom_killed", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", "experiment=custom_mlp", f"study.name={name}", f"study.num_samples={NUM_TRIALS}",
                    f"trainer.max_epochs={EPOCHS}", "scheduler=fifo", "study.max_concurrent=1",
                    "registry.heartbeat_s=1", f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    mid = wait_for(sweep, url, name, lambda ts: any(t.state == "running" and 1 <= t.epochs < EPOCHS for t in ts))
    sweep.sigkill()
    interrupted = next(t for t in mid if t.state == "running" and t.epochs >= 1)

    resume = Driver(["resume", name], tmp_path, sst2_dir)
    assert resume.wait() == 0, resume.output()[-3000:]
    s = assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", name)
    assert sorted(s["mlflow"]) == list(range(NUM_TRIALS)), "every trial has exactly one MLflow run"
    c = study_counts(tmp_path, name)
    assert c["record"].status == "completed" and c["record"].best_metric > 0.8  # digits: a real MLP learns them
    run = next(r for r in c["mlflow_children"] if r.data.tags["hpo.optuna_trial_number"] == str(interrupted.number))
    assert int(run.data.tags["hpo.resumed_after_epoch"]) >= 1, "the interrupted trial continued, not restarted"
    assert {"val_acc", "val_loss", "train_loss"} <= set(run.data.metrics), "the function's own metrics in MLflow"
    history = c["client"].get_metric_history(run.info.run_id, "val_acc")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    assert c["record"].best_model_uri.endswith("/best_model")
    refused = hpo(["predict", name, "x"], tmp_path, sst2_dir)
    assert refused.returncode == 1 and "task=custom" in refused.stderr
    with capsys.disabled():
        print(f"\n[custom kill test] killed with trial {interrupted.number} at epoch {interrupted.epochs}; after "
              f"resume: best val_acc {c['record'].best_metric:.4f}, {len(c['optuna_trials'])} Optuna trials, "
              f"{len(c['mlflow_children'])} MLflow child runs")


def test_a_raising_function_or_a_missing_metric_fails_its_trial_and_the_study_goes_on(tmp_path, sst2_dir,
                                                                                       on_pythonpath):
    (tmp_path / "flaky.py").write_text(FLAKY)
    name = "custom_flaky"
    done = hpo(["sweep", "task=custom", "task.fn=flaky:train", "study.metric=score", f"study.name={name}",
                "+search.mode={choices:[ok,raise,silent]}", "sampler=grid", "study.num_samples=3",
                "trainer.max_epochs=1", "resources.max_retries=0", f"storage.root={tmp_path}"], tmp_path, sst2_dir,
               timeout=600, process=True)  # the user's module on the driver's PYTHONPATH, as from their project
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    c = study_counts(tmp_path, name)
    by_mode = {t.params["mode"]: t for t in c["registry_trials"]}
    assert by_mode["ok"].state == TrialState.COMPLETED and c["record"].status == "completed"
    runs = {r.data.tags["hpo.optuna_trial_number"]: r for r in c["mlflow_children"]}
    for mode, words in (("raise", "boom from the user's code"), ("silent", "study.metric 'score' is not among")):
        trial = by_mode[mode]
        assert trial.state == TrialState.FAILED and trial.fail_reason == "error"
        run = runs[str(trial.number)]
        path = c["client"].download_artifacts(run.info.run_id, "error.txt", str(tmp_path / mode))
        assert words in open(path).read()
