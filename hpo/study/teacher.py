"""The teacher of a distillation study (``distill.teacher``): its outputs on the training rows, computed once.

Every trial of such a study trains on the teacher's outputs as well as on the labels (:mod:`trainers.distill`).
The teacher is a registered MLflow model. Its outputs over the study's training rows are computed on the driver
once and cached under ``storage.root/cache/teacher``, keyed by the teacher's model version and the rows' digest,
so a resumed study, and any later study of the same rows with the same teacher, reads them back instead; they
then travel with the study's data to every trial, as the rows do. hpo never looks inside them: the task computes
them (``training_outputs``) and puts them on its rows (``with_teacher``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from hpo.config.model_choice import StudyData, rows_of
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from hpo.stores.tracking import client as tracking_client
from hpo.stores.tracking import download_model_folders, model_version
from hpo.study.data import prepare_study_data
from trainers.tasks import Task, load_task

KEY = "distill.teacher"


def prepare_with_teacher(spec: StudySpec, log: Callable[[str], None] = print) -> StudyData:
    """The study's data (:func:`hpo.study.data.prepare_study_data`) with the teacher's outputs on its training rows."""
    return with_teacher(spec, prepare_study_data(spec, log), log)


def with_teacher(spec: StudySpec, data: StudyData, log: Callable[[str], None] = print) -> StudyData:
    """``data`` whose training rows carry the teacher's outputs (every model's copy, when the model is searched);
    ``data`` itself when the study distils from no teacher."""
    uri = spec.distill.teacher
    if uri is None:
        return data
    version = teacher_version(spec.storage.tracking_uri, uri)
    rows = rows_of(data)
    key = hashlib.sha256(f"{version.name}/{version.version}/{version.run_id}\0{rows.train.digest()}".encode())
    cache = spec.storage.cache_dir / "teacher" / f"{key.hexdigest()[:24]}.pt"
    described = f"teacher {uri} (version {version.version})"
    task = load_task(spec.task)
    if cache.is_file():
        outputs = torch.load(cache, weights_only=True)
        log(f"{described}: its outputs on {len(outputs)} training rows read from the cache")
    else:
        outputs = _compute(spec, task, uri, rows, log)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(outputs, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").replace(cache)
        log(f"{described}: its outputs on {len(outputs)} training rows computed and cached")
    if isinstance(data, dict):
        return {name: task.with_teacher(copy, outputs) for name, copy in data.items()}
    return task.with_teacher(data, outputs)


def teacher_version(tracking_uri: str, uri: str) -> ModelVersion:
    """The registered model version ``uri`` names (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``); a
    :class:`ConfigError` naming ``distill.teacher`` when there is none."""
    try:
        return model_version(tracking_uri, uri)
    except MlflowException:
        known = sorted(m.name for m in tracking_client(tracking_uri).search_registered_models())
        raise ConfigError(KEY, f"no registered model version {uri} (registered models: {known or 'none'}); run the "
                               "teacher's study first, or name one of them") from None


def _compute(spec: StudySpec, task: Task, uri: str, student_rows: Any, log: Callable[[str], None]) -> torch.Tensor:
    """The teacher's outputs on the training rows, read as the teacher reads them (the task prepares them for it);
    an ensemble's are its members' combined as the ensemble combines them (mean probabilities or predictions)."""
    assert spec.data is not None, "config checks refuse a teacher for a task that reads its own data"
    members = []
    with tempfile.TemporaryDirectory(prefix="hpo-teacher-") as tmp:
        folders = download_model_folders(spec.storage.tracking_uri, uri, tmp)
        teacher_mb, student_mb = sum(map(weights_mb, folders)), weights_mb(Path(spec.model.name_or_path))
        if 0 < 0.9 * teacher_mb <= student_mb:  # a head's bytes aside, as large: said, not refused (self-distillation)
            log(f"warning: the student {spec.model.name_or_path} ({student_mb:.1f} MB) is not much smaller than the "
                f"teacher {uri} ({teacher_mb:.1f} MB): distillation buys little speed here")
        for folder in folders:
            labels = task.describe_model(folder)["labels"]
            if list(labels) != list(student_rows.label_names):
                raise ConfigError(KEY, f"{uri} predicts {list(labels)[:8] or 'a value'}, this study's data has "
                                       f"{list(student_rows.label_names)[:8] or 'float targets'}: the teacher must "
                                       "be of the same task and labels")
            rows = task.prepare(spec.data.source(spec.study.seed), str(folder), max_length=spec.trainer.max_length,
                                cache_dir=spec.storage.cache_dir / "prepared")
            members.append(task.training_outputs(folder, rows, spec.trainer.eval_batch_size))
    outputs = members[0] if len(members) == 1 else task.combine(members)
    width = outputs.reshape(len(outputs), -1).shape[1]
    if width != student_rows.num_labels:  # e.g. a classifier teaching a regression task
        raise ConfigError(KEY, f"{uri} gives {width} output(s) per row, this study's task {student_rows.num_labels}: "
                               "the teacher must be of the same task and labels")
    if len(outputs) != len(student_rows.train):
        raise ConfigError(KEY, f"the teacher read {len(outputs)} training rows, the student {len(student_rows.train)}")
    return outputs


def weights_mb(folder: Path) -> float:
    """The model weights' size on disk (0 for a hub name, which is not a folder here)."""
    files = [f for pattern in ("*.safetensors", "*.bin", "*.pt") for f in folder.rglob(pattern)] if folder.is_dir() \
        else []
    return sum(f.stat().st_size for f in files) / 2**20
