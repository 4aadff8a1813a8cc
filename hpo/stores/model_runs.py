"""MLflow runs that make a model beside a study's run (not under it): ``hpo refit``'s and ``hpo ensemble``'s; and
``hpo distill``'s student registered beside its teacher.

Each run lives in the study's experiment, tagged with its role and what it was made from, and registers its model
as the study's next version under an alias of its own (``refit``, ``ensemble``, ``distilled``), never
``champion``, which is chosen by the search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import DatasetInput, RunTag

from hpo.config.spec import StudySpec
from hpo.inference import EnsembleModel
from hpo.stores.records import StudyRecord
from hpo.stores.tracking import (
    CHAMPION,
    DISTILLED,
    ENSEMBLE,
    REFIT,
    STUDENT_STUDY_TAG,
    VALUE_TAG,
    client,
    log_fine_tuned,
    log_pyfunc,
    metrics_at,
    params_of,
    study_experiment_id,
)


class RefitRun:
    """``hpo refit``'s MLflow run: in the study's experiment beside (not under) the study's run, tagged with the
    trial it refits; its model is registered as the study's next version with the alias ``refit``."""

    def __init__(self, spec: StudySpec, record: StudyRecord, epochs: int, with_validation: bool, params: dict[str, Any],
                 datasets: Sequence[DatasetInput]) -> None:
        self.spec = spec
        self.client = client(spec.storage.tracking_uri)
        tags = {"hpo.study": spec.name, "hpo.role": "refit", "hpo.refit_of_trial": str(record.best_trial_number),
                "hpo.study_run_id": record.mlflow_parent_run_id or "", "hpo.with_validation": str(with_validation),
                "hpo.validation_held_out": str(not with_validation)}
        experiment = study_experiment_id(self.client, spec.name, record.mlflow_experiment_id)
        self.run_id = self.client.create_run(experiment, run_name=f"{spec.name}-refit", tags=tags).info.run_id
        self.client.log_batch(self.run_id, params=params_of({k: v for k, v in params.items()
                                                          if k not in ("num_threads", "resume_from")}
                                                         | {"epochs": epochs}))
        self.client.log_inputs(self.run_id, datasets=list(datasets))

    def log_epoch(self, epoch: int, result: Mapping[str, float]) -> None:
        self.client.log_batch(self.run_id, metrics=metrics_at(result, epoch))

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")

    def finish(self, folder: Path) -> str:
        """Logs and registers the model in ``folder``; returns ``models:/<study>/<version>``."""
        _, version = log_fine_tuned(self.spec.storage.tracking_uri, self.run_id, folder, self.spec.name,
                                    self.spec.task)
        assert version is not None, "a model logged with a registered name has a version"
        self.client.set_model_version_tag(self.spec.name, version, "hpo.kind", "refit")
        self.client.set_registered_model_alias(self.spec.name, REFIT, version)
        self.client.set_terminated(self.run_id, "FINISHED")
        return f"models:/{self.spec.name}/{version}"


class EnsembleRun:
    """``hpo ensemble``'s MLflow run: the members (trial numbers and runs), the ensemble's validation metrics and its
    gain over the best member; its pyfunc averages the members' probabilities and is registered with the alias
    ``ensemble``."""

    def __init__(self, spec: StudySpec, record: StudyRecord, members: Sequence[Any]) -> None:
        self.spec = spec
        self.client = client(spec.storage.tracking_uri)
        numbers = ",".join(str(t.number) for t in members)
        tags = {"hpo.study": spec.name, "hpo.role": ENSEMBLE, "hpo.members": numbers,
                "hpo.member_run_ids": ",".join(t.mlflow_run_id or "" for t in members),
                "hpo.study_run_id": record.mlflow_parent_run_id or ""}
        experiment = study_experiment_id(self.client, spec.name, record.mlflow_experiment_id)
        self.run_id = self.client.create_run(experiment, run_name=f"{spec.name}-ensemble-top{len(members)}",
                                             tags=tags).info.run_id

    def finish(self, folders: Sequence[Path], metrics: Mapping[str, float], best_member: Mapping[str, float],
               register: bool) -> str:
        """Logs the metrics (``best_member_*`` and ``gain_*`` beside the ensemble's) and the model; returns its URI."""
        keys = [k for k in metrics if k.startswith("val_")]
        logged = dict(metrics) | {f"best_member_{k}": best_member[k] for k in keys if k in best_member} \
            | {f"gain_{k}": metrics[k] - best_member[k] for k in keys if k in best_member}
        self.client.log_batch(self.run_id, metrics=metrics_at(logged, 0, list(logged)),
                              tags=[RunTag("hpo.metric", self.spec.objective.metric)])
        artifacts = {f"member_{i}": str(folder) for i, folder in enumerate(folders)}
        uri, version = log_pyfunc(self.spec.storage.tracking_uri, self.run_id, EnsembleModel(self.spec.task), artifacts,
                                  self.spec.name if register else None)
        if version is not None:
            self.client.set_model_version_tag(self.spec.name, version, "hpo.kind", ENSEMBLE)
            self.client.set_registered_model_alias(self.spec.name, ENSEMBLE, version)
            uri = f"models:/{self.spec.name}/{version}"
        self.client.set_terminated(self.run_id, "FINISHED")
        return uri

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


def register_distilled(tracking_uri: str, teacher_study: str, student_study: str, value: float) -> str:
    """The student study's champion, copied as the teacher study's next version with the alias ``distilled`` (the
    teacher's ``champion`` stays); returns ``models:/<teacher study>/<version>``."""
    writer = client(tracking_uri)
    version = writer.copy_model_version(f"models:/{student_study}@{CHAMPION}", teacher_study).version
    tags = {"hpo.kind": DISTILLED, STUDENT_STUDY_TAG: student_study, VALUE_TAG: repr(value)}
    for key, tag in tags.items():
        writer.set_model_version_tag(teacher_study, version, key, tag)
    writer.set_registered_model_alias(teacher_study, DISTILLED, version)
    return f"models:/{teacher_study}/{version}"
