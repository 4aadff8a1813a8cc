"""MLflow runs that make a model beside a study's run (not under it): ``hpo refit`` and ``hpo ensemble``, and the
logging of a classifier as a pyfunc model that they and the study's own best model share.

Each run lives in the study's experiment, tagged with its role and what it was made from, and registers its model
as the study's next version under an alias of its own (``refit``, ``ensemble``), never ``champion``, which is
chosen by the search.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import DatasetInput, Metric, Param, RunTag

from hpo.spec import StudySpec

REFIT = "refit"  # the alias of a study's latest refit (hpo refit)
ENSEMBLE = "ensemble"  # the alias of its latest ensemble (hpo ensemble)
LOGGED_METRICS = ("val_loss", "val_accuracy", "val_balanced_accuracy", "val_f1_macro", "val_auc", "train_loss", "lr",
                  "train_examples_per_s", "time_this_iter_s", "micro_batch_size", "grad_accumulation",
                  "cv_sd", "latency_ms", "epoch_seconds", "trainable_params", "model_mb")
_PIP = ["torch==2.13.0", "transformers==5.23.0", "pandas", "hpo"]


def log_pyfunc(tracking_uri: str, run_id: str, python_model, artifacts: dict[str, str],
               register_as: str | None) -> tuple[str, str | None]:
    """Logs ``python_model`` with ``artifacts`` as the pyfunc ``best_model`` of run ``run_id`` (registered as
    ``register_as`` when given). Returns (model URI, registered version or None)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    # mlflow warns that a pickled python_model runs code on load; ours is this package's own class.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="best_model", python_model=python_model, artifacts=artifacts,
                                       registered_model_name=register_as, pip_requirements=_PIP)
    return info.model_uri, None if info.registered_model_version is None else str(info.registered_model_version)


def log_classifier(tracking_uri: str, run_id: str, folder: Path, register_as: str | None) -> tuple[str, str | None]:
    """A classifier folder as a pyfunc model (:class:`hpo.export.TextClassifierModel`)."""
    from hpo.export import TextClassifierModel

    return log_pyfunc(tracking_uri, run_id, TextClassifierModel(), {"checkpoint": str(folder)}, register_as)


def params_of(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in sorted(values.items())]


def _metrics(result: Mapping[str, float], step: int, keys: Sequence[str]) -> list[Metric]:
    import time

    now = int(time.time() * 1000)
    return [Metric(k, float(result[k]), now, step) for k in keys if k in result]


class RefitRun:
    """``hpo refit``'s MLflow run: in the study's experiment beside (not under) the study's run, tagged with the
    trial it refits; its model is registered as the study's next version with the alias ``refit``."""

    def __init__(self, spec: StudySpec, record, epochs: int, with_validation: bool, params: dict[str, Any],
                 datasets: Sequence[DatasetInput]) -> None:
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.storage.tracking_uri)
        tags = {"hpo.study": spec.name, "hpo.role": "refit", "hpo.refit_of_trial": str(record.best_trial_number),
                "hpo.study_run_id": record.mlflow_parent_run_id or "", "hpo.with_validation": str(with_validation),
                "hpo.validation_held_out": str(not with_validation)}
        experiment = record.mlflow_experiment_id or self.client.get_experiment_by_name(spec.name).experiment_id
        self.run_id = self.client.create_run(experiment, run_name=f"{spec.name}-refit", tags=tags).info.run_id
        self.client.log_batch(self.run_id, params=params_of({k: v for k, v in params.items()
                                                          if k not in ("num_threads", "resume_from")}
                                                         | {"epochs": epochs}))
        self.client.log_inputs(self.run_id, datasets=list(datasets))

    def log_epoch(self, epoch: int, result: Mapping[str, float]) -> None:
        self.client.log_batch(self.run_id, metrics=_metrics(result, epoch, LOGGED_METRICS))

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")

    def finish(self, folder: Path) -> str:
        """Logs and registers the model in ``folder``; returns ``models:/<study>/<version>``."""
        _, version = log_classifier(self.spec.storage.tracking_uri, self.run_id, folder, self.spec.name)
        self.client.set_model_version_tag(self.spec.name, version, "hpo.kind", "refit")
        self.client.set_registered_model_alias(self.spec.name, REFIT, version)
        self.client.set_terminated(self.run_id, "FINISHED")
        return f"models:/{self.spec.name}/{version}"


class EnsembleRun:
    """``hpo ensemble``'s MLflow run: the members (trial numbers and runs), the ensemble's validation metrics and its
    gain over the best member; its pyfunc averages the members' probabilities and is registered with the alias
    ``ensemble``."""

    def __init__(self, spec: StudySpec, record, members: Sequence[Any]) -> None:
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.storage.tracking_uri)
        numbers = ",".join(str(t.number) for t in members)
        tags = {"hpo.study": spec.name, "hpo.role": ENSEMBLE, "hpo.members": numbers,
                "hpo.member_run_ids": ",".join(t.mlflow_run_id or "" for t in members),
                "hpo.study_run_id": record.mlflow_parent_run_id or ""}
        experiment = record.mlflow_experiment_id or self.client.get_experiment_by_name(spec.name).experiment_id
        self.run_id = self.client.create_run(experiment, run_name=f"{spec.name}-ensemble-top{len(members)}",
                                             tags=tags).info.run_id

    def finish(self, folders: Sequence[Path], metrics: Mapping[str, float], best_member: Mapping[str, float],
               register: bool) -> str:
        """Logs the metrics (``best_member_*`` and ``gain_*`` beside the ensemble's) and the model; returns its URI."""
        from hpo.export import EnsembleModel

        keys = [k for k in metrics if k.startswith("val_")]
        logged = dict(metrics) | {f"best_member_{k}": best_member[k] for k in keys if k in best_member} \
            | {f"gain_{k}": metrics[k] - best_member[k] for k in keys if k in best_member}
        self.client.log_batch(self.run_id, metrics=_metrics(logged, 0, list(logged)),
                              tags=[RunTag("hpo.metric", self.spec.objective.metric)])
        artifacts = {f"member_{i}": str(folder) for i, folder in enumerate(folders)}
        uri, version = log_pyfunc(self.spec.storage.tracking_uri, self.run_id, EnsembleModel(), artifacts,
                                  self.spec.name if register else None)
        if version is not None:
            self.client.set_model_version_tag(self.spec.name, version, "hpo.kind", ENSEMBLE)
            self.client.set_registered_model_alias(self.spec.name, ENSEMBLE, version)
            uri = f"models:/{self.spec.name}/{version}"
        self.client.set_terminated(self.run_id, "FINISHED")
        return uri

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")
