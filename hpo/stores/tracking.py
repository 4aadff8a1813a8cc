"""MLflow's one door: every MLflow client is made here (:func:`client`), and every write to MLflow is made in
:mod:`hpo.stores` (this module, :mod:`~hpo.stores.study_run`, :mod:`~hpo.stores.model_runs`). Readers (the
report, the model commands) use :func:`client` too.

A study is one experiment, with a parent run for the study and a nested run per trial; ``hpo refit`` and
``hpo ensemble`` add runs beside the study's. The tags and names here are the contract between them and the
people reading MLflow's UI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel, PythonModel

from hpo.inference import FineTunedModel
from hpo.model_uri import parse as parse_model_uri
from hpo.states import TrialState
from trainers.config import REGRESSION_METRICS, VALIDATION_METRICS

TRIAL_ID_TAG = "hpo.ray_trial_id"
TRIAL_NUMBER_TAG = "hpo.optuna_trial_number"
NODE_TAG = "hpo.ray_node_id"  # where the trial's latest attempt ran (with hpo.node_ip)
STATUS_TAG = "hpo.trial_status"  # a TrialState value
FAIL_REASON_TAG = "hpo.fail_reason"  # oom | error
EVALUATION_DIR = "evaluation"  # a trial run's per-class results at its best epoch
CHAMPION = "champion"  # the registered model's alias for the study's best version
REFIT = "refit"  # the alias of a study's latest refit (hpo refit)
ENSEMBLE = "ensemble"  # the alias of its latest ensemble (hpo ensemble)
DISTILLED = "distilled"  # the alias of its best distilled student (hpo distill), copied from the student study
STUDENT_STUDY_TAG = "hpo.student_study"  # on a `distilled` version: the study that trained it
VALUE_TAG = "hpo.value"  # a registered version's objective value, which the champion is chosen by
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow's UI to pick an experiment's landing page
RUN_STATUS = {TrialState.RUNNING: "RUNNING", TrialState.COMPLETED: "FINISHED", TrialState.PRUNED: "FINISHED",
              TrialState.STOPPED: "FINISHED",
              TrialState.FAILED: "FAILED", TrialState.INTERRUPTED: "KILLED"}
# Every task's validation metrics (a trial reports its own task's), then the training and cost figures.
LOGGED_METRICS = (*dict.fromkeys((*VALIDATION_METRICS, *REGRESSION_METRICS)), "train_loss", "lr",
                  "train_examples_per_s", "time_this_iter_s", "micro_batch_size", "grad_accumulation",
                  "cv_sd", "latency_ms", "epoch_seconds", "trainable_params", "model_mb")
_PIP = ["torch==2.13.0", "transformers==5.23.0", "pandas", "hpo"]


_RETRIES_ENV, _BACKOFF_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
_MAX_RETRIES, _MAX_WAIT_S = 10, 120  # MLflow's cap on retries; urllib3's on one backoff wait


def retry_settings(retry_s: float) -> tuple[int, int]:
    """(retries, backoff factor) whose waits add up to at least ``retry_s``: urllib3, under MLflow's client, waits
    ``factor * 2**(k-1)`` seconds (at most 120) before the k-th retry, nothing before the first.

    >>> retry_settings(240), retry_settings(20), retry_settings(600)
    ((8, 1), (5, 1), (10, 2))
    """
    for factor in range(1, _MAX_WAIT_S + 1):
        waited = 0
        for retries in range(1, _MAX_RETRIES + 1):
            waited += 0 if retries == 1 else min(_MAX_WAIT_S, factor * 2 ** (retries - 1))
            if waited >= retry_s:
                return retries, factor
    return _MAX_RETRIES, _MAX_WAIT_S


def set_retry_budget(retry_s: float) -> None:
    """``tracking.retry_s``: how long this process's MLflow client retries a request to a server that does not
    answer, through the environment variables MLflow reads on every request."""
    retries, factor = retry_settings(retry_s)
    os.environ[_RETRIES_ENV], os.environ[_BACKOFF_ENV] = str(retries), str(factor)


class TrackingGone(RuntimeError):
    """The MLflow server stopped answering and the client's retries (``tracking.retry_s``) ran out."""


def _unreachable(error: MlflowException) -> bool:
    """MLflow's client giving up on a server that did not answer: its message is urllib3's (no error code)."""
    return "Max retries exceeded" in str(error) or "Connection refused" in str(error)


class WatchedClient:
    """An MlflowClient whose calls note the server going away: the first call that exhausts the retries raises
    :class:`TrackingGone`, and every later one raises it at once (a study ending because MLflow is gone should not
    wait ``retry_s`` again for each write it has left)."""

    def __init__(self, inner: MlflowClient, where: str) -> None:
        self._inner, self._where = inner, where
        self.gone: TrackingGone | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.gone is not None:
                raise self.gone
            try:
                return attribute(*args, **kwargs)
            except MlflowException as err:
                if not _unreachable(err):
                    raise
                retries = os.environ.get(_RETRIES_ENV, "7")
                self.gone = TrackingGone(f"the MLflow server at {self._where} stopped answering ({retries} retries "
                                         "with backoff ran out: tracking.retry_s)")
                raise self.gone from None
        return call


TRIALS_VIEW = "hpo-trials"  # the share key of the runs page `hpo ui` opens (?viewStateShareKey=...)
_SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow's UI reads a shared view's state from this experiment tag


def trials_view(objectives: Sequence[tuple[str, str]], params: Sequence[str]) -> dict[str, Any]:
    """The runs page's state (MLflow's UI, ``experiment-page`` search facets and UI state): the trials' runs flat
    (not folded under the study's run), the first objective's column sorted best first, then the other objectives,
    each trial's state and its parameters.

    >>> trials_view([("val_accuracy", "max")], ["learning_rate"])["selectedColumns"]
    ['metrics.`val_accuracy`', 'tags.`hpo.trial_status`', 'params.`learning_rate`']
    """
    metric, mode = objectives[0]
    columns = [f"metrics.`{m}`" for m, _ in objectives] + [f"tags.`{STATUS_TAG}`"] + [f"params.`{p}`" for p in params]
    return {"searchFilter": f"tags.`{TRIAL_NUMBER_TAG}` LIKE '%'", "orderByKey": f"metrics.`{metric}`",
            "orderByAsc": mode == "min", "selectedColumns": columns}


def set_trials_view(mlflow: MlflowClient, experiment_id: str, objectives: Sequence[tuple[str, str]],
                    params: Sequence[str], only_if_missing: bool = False) -> None:
    """Stores :func:`trials_view` as the experiment's shared view :data:`TRIALS_VIEW`, which ``hpo ui``'s page
    opens (MLflow keeps a page's columns in the browser otherwise: a first visit would show none of the metrics)."""
    key = f"{_SHARED_VIEW_TAG}{TRIALS_VIEW}"
    if only_if_missing and key in mlflow.get_experiment(experiment_id).tags:
        return
    mlflow.set_experiment_tag(experiment_id, key, json.dumps(trials_view(objectives, params)))


# MLflow's client prints "View run ... at: <tracking URI>" when a run on a server ends: one line per trial, with the
# URI's password in it when the URI holds one (hpo prints its own progress, redacted).
_NO_URL_PRINTING = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def client(tracking_uri: str) -> MlflowClient:
    """The MLflow client of a tracking URI: the only place hpo makes one."""
    os.environ[_NO_URL_PRINTING] = "true"
    return MlflowClient(tracking_uri=tracking_uri)


def study_experiment_id(mlflow: MlflowClient, study: str, recorded: str | None) -> str:
    """The study's MLflow experiment: the id the registry recorded, else the experiment named after the study."""
    if recorded:
        return recorded
    experiment = mlflow.get_experiment_by_name(study)
    if experiment is None:
        raise LookupError(f"MLflow has no experiment for study {study!r}")
    return experiment.experiment_id


def now_ms() -> int:
    return int(time.time() * 1000)


def params_of(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in sorted(values.items())]


# What Ray and hpo add to a trial's results: bookkeeping, not metrics (task=custom logs every other number).
_NOT_METRICS = {"timestamp", "training_iteration", "time_total_s", "time_since_restore", "iterations_since_restore",
                "pid", "done", "epoch", "improved", "date", "hostname", "node_ip", "trial_id", "experiment_tag",
                "checkpoint_dir_name", "should_checkpoint"}


def reported_metrics(result: Mapping[str, Any]) -> list[str]:
    """The numbers a trial reported itself, whatever their names (``task=custom``).

    >>> reported_metrics({"val_acc": 0.9, "loss": 0.3, "epoch": 1, "hpo_node_id": "x", "time_total_s": 2.0})
    ['val_acc', 'loss']
    """
    return [k for k, v in result.items() if k not in _NOT_METRICS and not k.startswith("hpo_")
            and isinstance(v, (int, float)) and not isinstance(v, bool)]


def metrics_at(result: Mapping[str, float], step: int, keys: Sequence[str] = LOGGED_METRICS) -> list[Metric]:
    """``result``'s values of ``keys`` as MLflow metrics at ``step``."""
    now = now_ms()
    return [Metric(k, float(result[k]), now, step) for k in keys if k in result]


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (the pyfunc logger, artifact downloads) reads a process-wide tracking URI: set it for
    one call and put the previous one back, so no other code sees it changed."""
    previous = mlflow.get_tracking_uri()
    os.environ[_NO_URL_PRINTING] = "true"
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def log_pyfunc(tracking_uri: str, run_id: str, python_model: PythonModel, artifacts: dict[str, str],
               register_as: str | None) -> tuple[str, str | None]:
    """Logs ``python_model`` with ``artifacts`` as the pyfunc ``best_model`` of run ``run_id`` (registered as
    ``register_as`` when given). Returns (model URI, registered version or None)."""
    # mlflow warns that a pickled python_model runs code on load; ours is this package's own class.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    with _tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="best_model", python_model=python_model, artifacts=artifacts,
                                       registered_model_name=register_as, pip_requirements=_PIP)
    return info.model_uri, None if info.registered_model_version is None else str(info.registered_model_version)


def log_fine_tuned(tracking_uri: str, run_id: str, folder: Path, register_as: str | None,
                   task: str) -> tuple[str, str | None]:
    """A model folder of ``task`` as a pyfunc model (:class:`hpo.inference.FineTunedModel`)."""
    return log_pyfunc(tracking_uri, run_id, FineTunedModel(task), {"checkpoint": str(folder)}, register_as)


def download_model(tracking_uri: str, model_uri: str, dst: str) -> Path:
    """The classifier folder inside a registered pyfunc model (``models:/NAME@alias``), downloaded under ``dst``."""
    with _tracking_uri(tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst))
    artifacts = mlflow.models.Model.load(str(local)).flavors["python_function"]["artifacts"]
    return local / artifacts["checkpoint"]["path"]


def model_version(tracking_uri: str, model_uri: str) -> ModelVersion:
    """The registered version ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` names; MlflowException if none."""
    if (uri := parse_model_uri(model_uri)) is None:
        raise MlflowException(f"{model_uri!r} names no registered version (models:/NAME@ALIAS or models:/NAME/VERSION)")
    reader = client(tracking_uri)
    if uri.alias:
        return reader.get_model_version_by_alias(uri.name, uri.alias)
    return reader.get_model_version(uri.name, str(uri.version))


def download_model_folders(tracking_uri: str, model_uri: str, dst: str) -> list[Path]:
    """Every model folder inside a registered pyfunc model: one, or an ensemble's members (``hpo ensemble``)."""
    with _tracking_uri(tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst))
    artifacts = mlflow.models.Model.load(str(local)).flavors["python_function"]["artifacts"]
    return [local / artifacts[name]["path"] for name in sorted(artifacts)]


def load_model(tracking_uri: str, model_uri: str) -> PyFuncModel:
    """A registered model, loaded to predict."""
    with _tracking_uri(tracking_uri):
        return mlflow.pyfunc.load_model(model_uri)


def finish_study_run(client: MlflowClient, run_id: str, metric: str, best: dict[str, Any] | None, status: str,
                     stop_reason: str | None) -> None:
    """The study run's end: its best trial (``value``, ``params``, ``number``, ``run_id``), why it ended, its status."""
    if best is not None:  # tags, not params: a resumed study may find a new best, and params are immutable
        tags = {f"best.{k}": str(v) for k, v in best["params"].items()}
        tags |= {"hpo.best_trial_number": str(best["number"]), "hpo.best_run_id": best.get("run_id") or ""}
        client.log_batch(run_id, metrics=[Metric(f"best_{metric}", best["value"], now_ms(), 0)],
                         tags=[RunTag(k, v) for k, v in tags.items()])
    if stop_reason:
        client.set_tag(run_id, "hpo.stop_reason", stop_reason)
    client.set_terminated(run_id, status)


def log_report(client: MlflowClient, study_run_id: str, folder: Path) -> None:
    """The study report (:mod:`hpo.reporting.report`) as artifacts of the study's run, under ``report/``: at the end
    of a study (through the ledger) and from ``hpo report``, which derives it again from the stores."""
    client.log_artifacts(study_run_id, str(folder), "report")
