"""What a resume finds to do: trials Optuna still holds as RUNNING (cut by a crash or `hpo stop`), each from its
newest complete checkpoint; and the end of a study whose driver died while closing it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState as OptunaState

from hpo.config.compose import stored_storage
from hpo.reporting.report import build_report, write_report
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.records import StudyRecord
from hpo.stores.registry import Registry
from hpo.stores.tracking import client as tracking_client
from hpo.stores.tracking import finish_study_run, log_report
from hpo.study._searcher import Resume


def interrupted_trials(study: optuna.Study, registry: Registry, store: CheckpointStore) -> list[Resume]:
    """Open trials, oldest first, with the checkpoint each continues from (None: it starts over).

    The driver may have died after Ray wrote a checkpoint and before the registry heard of it, so the
    trial's Ray folders are searched, not only the checkpoint the registry recorded.
    """
    resumes = []
    for trial in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        record = registry.trial(study.study_name, trial.number)
        checkpoint = store.latest_of_trial(record.ray_trial_dir, record.checkpoint) if record else None
        resumes.append(Resume(trial.number, checkpoint))
    return resumes


def finish_closing(registry: Registry, record: StudyRecord) -> bool:
    """Completes what a driver killed while closing its study left undone: the registry had recorded the end (it is
    written first), the study's MLflow run was still open and its report unwritten. True if there was any."""
    storage = stored_storage(record, [registry.url])
    client = tracking_client(storage.tracking_uri)
    run_id = record.mlflow_parent_run_id
    if run_id is None or client.get_run(run_id).info.status != "RUNNING":
        return False
    out = storage.study_dir(record.name) / "report"
    write_report(build_report(registry, record.name), out)
    log_report(client, run_id, out)
    best = None
    if record.best_trial_number is not None:
        trial = registry.trial(record.name, record.best_trial_number)
        best = {"value": record.best_metric, "params": record.best_params or {}, "number": record.best_trial_number,
                "run_id": trial.mlflow_run_id if trial else None}
    finish_study_run(client, run_id, record.metric, best, record.status.mlflow_status, record.stop_reason)
    return True
