"""The three-store agreement check: what the registry, Optuna and MLflow hold for every trial of a study."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState as Optuna

from hpo.states import TrialState
from hpo.stores.registry import Registry
from hpo.stores.tracking import STATUS_TAG, TRIAL_NUMBER_TAG

# The ledger's table, written out again here so that a change to it shows up as a failing test.
OPTUNA_STATE = {
    "pruned": {TrialState.RUNNING: Optuna.RUNNING, TrialState.INTERRUPTED: Optuna.RUNNING,
               TrialState.COMPLETED: Optuna.COMPLETE, TrialState.PRUNED: Optuna.PRUNED,
               TrialState.STOPPED: Optuna.PRUNED, TrialState.FAILED: Optuna.FAIL},
    "complete": {TrialState.RUNNING: Optuna.RUNNING, TrialState.INTERRUPTED: Optuna.RUNNING,
                 TrialState.COMPLETED: Optuna.COMPLETE, TrialState.PRUNED: Optuna.COMPLETE,
                 TrialState.STOPPED: Optuna.COMPLETE, TrialState.FAILED: Optuna.FAIL},
}
RUN_STATUS = {TrialState.RUNNING: "RUNNING", TrialState.COMPLETED: "FINISHED", TrialState.PRUNED: "FINISHED",
              TrialState.STOPPED: "FINISHED", TrialState.FAILED: "FAILED", TrialState.INTERRUPTED: "KILLED"}


def stores_of(registry_url: str, tracking_uri: str, name: str) -> dict:
    """Per trial number: the registry record, the Optuna trial, the MLflow run and its objective history."""
    registry = Registry(registry_url)
    record = registry.require(name)
    study = optuna.load_study(study_name=name, storage=record.optuna_url)
    client = MlflowClient(tracking_uri)
    runs = [r for r in client.search_runs([record.mlflow_experiment_id], max_results=1000)
            if r.data.tags.get("mlflow.parentRunId") == record.mlflow_parent_run_id
            and TRIAL_NUMBER_TAG in r.data.tags]  # trials' runs; confirmation reruns have their own tags
    return {
        "record": record,
        "registry": {t.number: t for t in registry.trials(name)},
        "optuna": {t.number: t for t in study.trials},
        "mlflow": {int(r.data.tags[TRIAL_NUMBER_TAG]): r for r in runs},
        "history": {int(r.data.tags[TRIAL_NUMBER_TAG]): [
            (m.step, m.value) for m in sorted(client.get_metric_history(r.info.run_id, record.metric),
                                              key=lambda m: m.step)] for r in runs},
    }


def assert_stores_agree(registry_url: str, tracking_uri: str, name: str, feedback: str = "pruned") -> dict:
    """Every trial is in all three stores, in the same state, with the same curve (one value per epoch)."""
    s = stores_of(registry_url, tracking_uri, name)
    assert set(s["registry"]) == set(s["optuna"]) == set(s["mlflow"]), "the same trials in every store"
    for number, t in s["registry"].items():
        ot, run = s["optuna"][number], s["mlflow"][number]
        fail = t.fail_reason == "oom"
        expected = Optuna.PRUNED if fail else OPTUNA_STATE[feedback][t.state]
        where = f"trial {number} ({t.state.value}, {t.epochs} epochs)"
        assert ot.state == expected, f"{where}: Optuna says {ot.state}"
        assert run.data.tags[STATUS_TAG] == t.state.value and run.info.status == RUN_STATUS[t.state], where
        epochs = list(range(1, t.epochs + 1))
        assert sorted(t.values) == epochs, f"{where}: registry curve {t.values}"
        assert sorted(ot.intermediate_values) == epochs, f"{where}: Optuna {ot.intermediate_values}"
        assert [step for step, _ in s["history"][number]] == epochs, f"{where}: MLflow {s['history'][number]}"
        for epoch in epochs:
            assert ot.intermediate_values[epoch] == t.values[epoch] == dict(s["history"][number])[epoch], where
        if ot.state == Optuna.COMPLETE:
            assert ot.value == t.best_metric, f"{where}: Optuna ranks it by its best epoch"
        if ot.state == Optuna.PRUNED and epochs:
            assert ot.value == t.values[epochs[-1]], f"{where}: a pruned trial's value is its last epoch's"
    return s
