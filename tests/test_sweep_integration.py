"""A real sweep: tiny BERT on real SST-2 rows, a local Ray, ASHA, Optuna, a real `mlflow server`."""

from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hpo.config.compose import build_spec, compose
from hpo.errors import ConfigError
from hpo.stores.tracking import STATUS_TAG, TRIAL_ID_TAG
from hpo.study.run import run_study
from tests.helpers.stores import assert_stores_agree

NUM_TRIALS, EPOCHS = 6, 3
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies


@pytest.fixture(scope="module")
def finished_study(small_sst2, tiny_bert, local_ray, mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
        f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
        # One trial at a time: what ASHA sees (and so which trials it stops) does not depend on timing.
        "study.name=it_sweep", f"study.num_samples={NUM_TRIALS}", "study.max_concurrent=1",
        f"trainer.max_epochs={EPOCHS}", "scheduler=asha", f"tracking.uri={mlflow_server}", f"storage.root={root}",
        "search.learning_rate.high=1e-2",
        # The sampler's own draws from the first trial: they spread over the wide LR range, so some trials are
        # worse and ASHA has something to stop (the portfolio's 4 tuned configs tie on this tiny model and data).
        "search.first_trial=sampler",
    ])
    spec = build_spec(cfg)
    return spec, run_study(spec), MlflowClient(mlflow_server)


def test_mlflow_has_one_parent_and_a_nested_run_per_trial(finished_study):
    spec, outcome, client = finished_study
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    assert len(parents) == 1 and len(runs) == 1 + NUM_TRIALS and len(children) == NUM_TRIALS
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == NUM_TRIALS

    for child in children:
        assert {"learning_rate", "batch_size", "freeze_depth", "weight_decay", "dropout"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        status = child.data.tags[STATUS_TAG]
        assert status == ("completed" if len(history) == EPOCHS else "pruned")
        assert child.info.status == "FINISHED"
    assert any(c.data.tags[STATUS_TAG] == "pruned" for c in children), "ASHA stopped no trial"

    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics[f"best_{spec.objective.metric}"] == pytest.approx(outcome.best_value)
    assert {f"best.{k}": str(v) for k, v in outcome.best_params.items()}.items() <= parent.data.tags.items()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study_config.yaml", "search_space.json", "report"} <= artifacts


def test_best_checkpoint_downloads_and_loads_with_from_pretrained(finished_study, tmp_path):
    spec, outcome, client = finished_study
    parent = client.get_run(outcome.parent_run_id)
    best_run_id = parent.data.tags["hpo.best_run_id"]
    local = client.download_artifacts(best_run_id, "checkpoint", str(tmp_path))
    model = AutoModelForSequenceClassification.from_pretrained(local)
    tokenizer = AutoTokenizer.from_pretrained(local)
    assert model.config.num_labels == 2 and tokenizer("a fine film")["input_ids"]


def test_best_model_is_registered_and_predicts(finished_study, mlflow_server):
    spec, outcome, client = finished_study
    versions = client.search_model_versions(f"name='{spec.name}'")
    assert len(versions) == 1 and versions[0].run_id == outcome.parent_run_id
    assert outcome.model_uri == f"models:/{spec.name}/1"
    mlflow.set_tracking_uri(mlflow_server)
    predictions = mlflow.pyfunc.load_model(outcome.model_uri).predict(["a gorgeous film", "a dull mess"])
    assert list(predictions.columns) == ["label", "p_0", "p_1"] and len(predictions) == 2


def test_the_three_stores_agree_and_optuna_learns_pruned_trials_as_pruned(finished_study, mlflow_server):
    spec, outcome, _ = finished_study
    s = assert_stores_agree(spec.storage.registry_url, mlflow_server, spec.name)
    assert len(s["optuna"]) == NUM_TRIALS
    assert outcome.trial_states.get("completed", 0) + outcome.trial_states.get("pruned", 0) == NUM_TRIALS
    pruned = [t for t in s["optuna"].values() if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(len(t.intermediate_values) == s["registry"][t.number].epochs < EPOCHS for t in pruned)


def test_a_second_sweep_with_the_same_name_is_refused(finished_study):
    spec, _, _ = finished_study
    with pytest.raises(ConfigError, match="already exists"):
        run_study(spec)


def test_a_trial_no_node_can_hold_stops_the_study_before_anything_is_recorded(small_sst2, tiny_bert, local_ray,
                                                                               tmp_path):
    from hpo.stores.registry import Registry

    spec = build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", "study.name=no_gpu", "resources.gpu=1", f"storage.root={tmp_path}",
    ]))
    with pytest.raises(ConfigError, match=r"resources.gpu: a trial needs 1 CPU and 1 GPU but the largest node has"):
        run_study(spec)
    assert Registry.open(spec.storage.registry_url).list_studies() == []
    assert not (tmp_path / "mlflow.db").exists()


def test_a_finished_study_keeps_only_models_and_metrics(finished_study):
    """storage.keep=best: no trial keeps its resume state, and once the study has ended only the best trial keeps
    its model in checkpoint storage (every finished trial's is in its MLflow run)."""
    from hpo.stores.registry import Registry
    from trainers.checkpoint import STATE_FILE

    spec, outcome, _ = finished_study
    tune = spec.storage.root / spec.name / "tune"
    assert list(tune.rglob("result.json")) and not list(tune.rglob(STATE_FILE))
    for trial in Registry.open(spec.storage.registry_url).trials(spec.name):
        models = list(Path(trial.ray_trial_dir).glob("checkpoint_*/best"))
        assert bool(models) == (trial.number == outcome.best_trial_number), (trial.number, trial.state)
