"""Issue 13 in whole studies: the confirmation stage survives a SIGKILL and registers its winner; per-class results
reach MLflow and the report; `hpo ensemble` registers the top trials as one model. Tiny BERT (the model does not
matter here), real Ray, real MLflow, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.ranking import summary_of
from hpo.states import TrialState
from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, study_counts, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree
from trainers.objective import Objective

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
TOP_K, SEEDS = 2, 2
CONFIRM = with_overrides(TINY_SWEEP, "data.train_limit=300", "trainer.max_epochs=2", "study.num_samples=2",
                         f"confirm.top_k={TOP_K}", f"confirm.seeds={SEEDS}")


def test_confirmation_survives_a_kill_registers_its_winner_and_an_ensemble_follows(tmp_path, sst2_dir):
    name, url = "confirmed", f"sqlite:///{tmp_path}/registry.db"
    sweep = Driver(["sweep", *CONFIRM, f"study.name={name}", f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    registry = Registry(url)

    def one_done_one_running(trials) -> bool:
        states = [c.state for c in registry.confirmations(name)] if all(t.state.finished for t in trials) else []
        return TrialState.COMPLETED in states and TrialState.RUNNING in states

    try:
        wait_for(sweep, url, name, one_done_one_running, timeout=600)
    finally:
        sweep.sigkill()
    resume = hpo(["resume", name], tmp_path, sst2_dir)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert "confirmation: " in resume.stdout and "confirmed winner: trial" in resume.stdout

    reruns = registry.confirmations(name)
    assert len(reruns) == TOP_K * SEEDS and {c.state for c in reruns} == {TrialState.COMPLETED}
    record, trials = registry.require(name), registry.trials(name)
    summary = summary_of(trials, reruns, Objective(record.metric, record.mode), TOP_K, "mean")
    assert record.best_trial_number == summary.winner

    assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", name)
    c = study_counts(tmp_path, name)
    client, runs_of = c["client"], {int(r.data.tags["hpo.optuna_trial_number"]): r for r in c["mlflow_children"]
                                    if "hpo.optuna_trial_number" in r.data.tags}
    rerun_runs = [r for r in c["mlflow_children"] if r.data.tags.get("hpo.role") == "confirmation"]
    assert len(rerun_runs) == TOP_K * SEEDS, "the rerun the kill cut short reopened its run, not a second one"
    assert {r.info.status for r in rerun_runs} == {"FINISHED"}
    for run in rerun_runs:
        assert run.data.tags["hpo.confirms_run_id"] == runs_of[int(run.data.tags["hpo.confirms_trial"])].info.run_id
    assert f"confirmed_{record.metric}_mean" in runs_of[summary.winner].data.metrics
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["hpo.trial_number"] == str(summary.winner) and champion.tags["hpo.confirmed"] == "True"
    assert float(champion.tags["hpo.value"]) == pytest.approx(summary.config(summary.winner).mean)

    for number, run in runs_of.items():
        evaluation = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation/per_class.json",
                                                               str(tmp_path / f"eval_{number}"))).read_text())
        assert sum(map(sum, evaluation["confusion_matrix"])) == 200  # data.validation_limit
    status = hpo(["status", name], tmp_path, sst2_dir)
    section = status.stdout.split("confirmation reruns", 1)[-1]  # the reruns' own table, after the trials'
    assert "confirmation reruns" in status.stdout and section.count(" completed ") == TOP_K * SEEDS, status.stdout
    assert {rerun.mlflow_run_id for rerun in reruns} <= set(section.split()), "each rerun's row names its run"
    report = (tmp_path / name / "report" / "report.md").read_text()
    assert "## Confirmation" in report and "### Per class" in report

    made = hpo(["ensemble", name, "--top", "2"], tmp_path, sst2_dir)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "ensemble of 2:" in made.stdout
    version = client.get_model_version_by_alias(name, "ensemble")
    assert version.tags["hpo.kind"] == "ensemble"
    assert "gain_val_accuracy" in client.get_run(version.run_id).data.metrics
    predicted = hpo(["predict", name, "a gorgeous film", "--model-uri", f"models:/{name}@ensemble"], tmp_path,
                    sst2_dir)
    assert predicted.returncode == 0 and predicted.stdout.splitlines()[1].endswith("a gorgeous film")


def test_a_cross_validated_lora_study_with_two_objectives(tmp_path, sst2_dir):
    """LoRA trials (search=methods, method fixed), 2-fold cross-validation as the objective, accuracy against
    trainable parameters: the Pareto front reaches MLflow and the report, and the registered model (its adapters
    merged) predicts."""
    name = "cv_lora_pareto"
    sweep = with_overrides(TINY_SWEEP, "trainer.max_epochs=1", "study.num_samples=2", "search=methods",
                           "search.method=lora", "data.cv_folds=2",
                           "study.objectives=[val_accuracy:max,trainable_params:min]")
    made = hpo(["sweep", *sweep, f"study.name={name}", f"storage.root={tmp_path}"], tmp_path, sst2_dir, timeout=600)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert "Pareto front: trials" in made.stdout

    registry = Registry(f"sqlite:///{tmp_path}/registry.db")
    trials = registry.trials(name)
    assert {t.state for t in trials} == {TrialState.COMPLETED}
    for trial in trials:
        assert "lora_rank" in trial.params and not {"freeze_depth", "learning_rate"} & set(trial.params)
        assert 0 < trial.objectives["trainable_params"] < 100_000  # adapters and head, not the whole encoder
    c = study_counts(tmp_path, name)
    client = c["client"]
    front = json.loads(Path(client.download_artifacts(c["record"].mlflow_parent_run_id, "pareto_front.json",
                                                      str(tmp_path))).read_text())
    assert front["objectives"] == ["val_accuracy:max", "trainable_params:min"] and front["front"]
    assert all(r.data.metrics.get("cv_sd") is not None for r in c["mlflow_children"])
    assert "## Pareto front" in (tmp_path / name / "report" / "report.md").read_text()
    predicted = hpo(["predict", name, "a gorgeous film"], tmp_path, sst2_dir)
    assert predicted.returncode == 0 and predicted.stdout.splitlines()[1].endswith("a gorgeous film")
