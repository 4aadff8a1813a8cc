"""Running one study: data -> Optuna searcher + scheduler -> Ray Tune trials -> MLflow.

Reading order: :func:`run_study` is the whole story; the helpers below it each build one part.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Trials checkpoint only on improvement; Ray's warning about frequent snapshots is noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our callback prints one line per epoch instead

import optuna
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from hpo.config import StudySpec
from hpo.errors import ConfigError
from hpo.tracking import StudyRun
from hpo.trial import run_trial
from trainers.data import DataError, PreparedData, prepare_data


@dataclass
class StudyOutcome:
    name: str
    best_value: float | None
    best_params: dict[str, Any]
    best_trial_id: str | None
    best_checkpoint: str | None
    model_uri: str | None
    trial_status: dict[str, int]
    epochs_used: int
    epochs_max: int
    wall_s: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    optuna_url: str
    notes: list[str] = field(default_factory=list)


def run_study(spec: StudySpec) -> StudyOutcome:
    """Runs the study to the end (``num_samples`` trials or the time budget) and records it."""
    started = time.time()
    _refuse_existing_study(spec)
    data = _prepare(spec)
    study_run = StudyRun(spec)
    started_ray = _start_ray(spec)
    best, status = None, "FAILED"
    try:
        callback = study_run.trial_callback()
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(run_trial, data=data, fixed=spec.trainer | spec.space.fixed),
                {"cpu": spec.cpu, "gpu": spec.gpu},
            ),
            tune_config=tune.TuneConfig(
                search_alg=_searcher(spec),
                scheduler=spec.scheduler,
                metric=spec.metric,
                mode=spec.mode,
                num_samples=spec.num_samples,
                time_budget_s=spec.time_budget_s,
                trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str(spec.study_dir / "tune"),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode
                ),
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[callback],
                verbose=1 if spec.ray_verbose else 0,
            ),
        )
        results = tuner.fit()
        outcome = _outcome(spec, results, callback, study_run, started)
        if outcome.best_trial_id is not None:
            best = {"value": outcome.best_value, "params": outcome.best_params,
                    "trial_id": outcome.best_trial_id, "run_id": callback.run_ids.get(outcome.best_trial_id)}
        status = "FINISHED"
        return outcome
    finally:
        study_run.finish(best, status)
        if started_ray:
            ray.shutdown()


def _refuse_existing_study(spec: StudySpec) -> None:
    """Never append to, or overwrite, a study that already holds trials."""
    if not (spec.study_dir / "optuna.db").is_file():
        return
    storage = optuna.storages.RDBStorage(spec.optuna_url)
    if any(s.study_name == spec.name and s.n_trials for s in optuna.get_all_study_summaries(storage)):
        raise ConfigError(
            "study.name",
            f"a study named {spec.name!r} already exists in {spec.study_dir}; choose another study.name "
            "or delete that folder to start over",
        )


def _prepare(spec: StudySpec) -> PreparedData:
    """Reads and tokenizes the data once for every trial (and caches it for later studies)."""
    d = spec.data
    try:
        data = prepare_data(
            d.train_path, d.validation_path, spec.model_path,
            text_column=d.text_column, label_column=d.label_column, max_length=spec.trainer["max_length"],
            train_limit=d.train_limit, validation_limit=d.validation_limit, seed=spec.seed,
            cache_dir=spec.cache_dir / "tokenized",
        )
    except DataError as err:
        key = "data.validation_path" if str(d.validation_path) in str(err) else "data.train_path"
        raise ConfigError(key, str(err)) from None
    if spec.metric == "val_auc" and data.num_labels != 2:
        raise ConfigError("study.metric", f"val_auc needs a binary task; this data has {data.num_labels} labels")
    print(f"[{spec.name}] data: {len(data.train)} train / {len(data.validation)} validation rows, "
          f"labels {list(data.label_names)}", flush=True)
    return data


def _start_ray(spec: StudySpec) -> bool:
    """Starts a local Ray (or joins ``ray.address``) unless one is already up; True if we started it."""
    optuna.logging.set_verbosity(optuna.logging.INFO if spec.ray_verbose else optuna.logging.WARNING)
    if ray.is_initialized():
        return False
    ray.init(
        address=spec.ray_address,
        num_cpus=spec.ray_num_cpus if spec.ray_address is None else None,
        include_dashboard=False,
        logging_level=logging.INFO if spec.ray_verbose else logging.WARNING,
        log_to_driver=spec.ray_verbose,
    )
    return True


def _searcher(spec: StudySpec) -> ConcurrencyLimiter:
    """Optuna's sampler behind Ray's searcher API; the Optuna study persists in the study folder."""
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    search = OptunaSearch(
        space=spec.space.distributions,
        metric=spec.metric,
        mode=spec.mode,
        sampler=spec.sampler,
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(spec.optuna_url),
    )
    return ConcurrencyLimiter(search, max_concurrent=spec.max_concurrent)


def _outcome(spec: StudySpec, results, callback, study_run: StudyRun, started: float) -> StudyOutcome:
    statuses: dict[str, int] = {}
    epochs_used = 0
    for result in results:
        epochs_used += int((result.metrics or {}).get("training_iteration", 0))
    for trial_status in _trial_statuses(study_run, callback):
        statuses[trial_status] = statuses.get(trial_status, 0) + 1

    best_value = best_trial = best_checkpoint = model_uri = None
    best_params: dict[str, Any] = {}
    notes = []
    completed = [r for r in results if r.error is None and r.metrics_dataframe is not None
                 and spec.metric in r.metrics_dataframe]
    if completed:
        best = results.get_best_result(spec.metric, spec.mode, scope="all")
        column = best.metrics_dataframe[spec.metric]
        best_value = float(column.max() if spec.mode == "max" else column.min())
        best_trial = best.metrics.get("trial_id")
        best_params = {**spec.space.fixed, **best.config}
        checkpoint = best.get_best_checkpoint(spec.metric, spec.mode)
        best_checkpoint = checkpoint.path
        with checkpoint.as_directory() as local:
            model_uri = study_run.log_best_model(Path(local))
    else:
        notes.append("no trial reported a result: see the failed trials' errors in MLflow and Ray's logs")
    study_run.log_optuna_plots(optuna.load_study(study_name=spec.name, storage=spec.optuna_url))
    return StudyOutcome(
        name=spec.name, best_value=best_value, best_params=best_params, best_trial_id=best_trial,
        best_checkpoint=best_checkpoint, model_uri=model_uri, trial_status=statuses,
        epochs_used=epochs_used, epochs_max=spec.num_samples * spec.trainer["max_epochs"],
        wall_s=time.time() - started, tracking_uri=spec.tracking_uri, experiment_id=study_run.experiment_id,
        parent_run_id=study_run.run_id, optuna_url=spec.optuna_url, notes=notes,
    )


def _trial_statuses(study_run: StudyRun, callback) -> list[str]:
    from hpo.tracking import STATUS_TAG

    return [study_run.client.get_run(run_id).data.tags.get(STATUS_TAG, "unknown")
            for run_id in callback.run_ids.values()]
