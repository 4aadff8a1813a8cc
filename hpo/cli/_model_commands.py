"""The commands that use a study's best model: ``hpo export`` (the model's folder with a model card, and ONNX),
``hpo predict`` (rows in, labels and probabilities or scores out) and ``hpo refit`` (the best config trained again
and registered). They read the registry and MLflow; ``refit`` writes its own MLflow run. What a model reads and
answers is its task's business (:mod:`trainers.tasks`)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hpo.cli._common import fail, open_registry, require
from hpo.config.compose import stored_config, stored_storage
from hpo.config.resolvers import register
from hpo.config.sections import data_spec
from hpo.config.spec import StorageSpec
from hpo.errors import ConfigError
from hpo.models.card import ModelFacts, model_card
from hpo.models.ensemble import ensemble_top
from hpo.models.export import ExportMismatch, export_checked_onnx, export_folder
from hpo.models.refit import refit
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry, RegistryError, StudyRecord
from hpo.stores.tracking import client, download_model, load_model
from hpo.study.data import prepare_study_data
from hpo.study.teacher import prepare_with_teacher
from trainers.tasks import DEFAULT_TASK, Task, load_task

CHECK_ROWS = 64  # validation rows the ONNX export is checked on


def model_uri_of(record: StudyRecord, given: str | None) -> str | None:
    """``--model-uri``, else the study's champion when it registered a model."""
    return given or (f"models:/{record.name}@champion" if record.best_model_uri else None)


@contextlib.contextmanager
def best_model_folder(record: StudyRecord, storage: StorageSpec, model_uri: str | None) -> Iterator[Path]:
    """A local folder holding the model (its task's layout): the registered one, or the study's best
    checkpoint when it registered none (a study that was stopped)."""
    if model_uri:
        with tempfile.TemporaryDirectory(prefix="hpo-model-") as tmp:
            yield download_model(storage.tracking_uri, model_uri, tmp)
    elif record.best_checkpoint:
        with CheckpointStore(storage.checkpoints).full_model(record.best_checkpoint) as folder:
            yield Path(folder)
    else:
        fail(f"study {record.name!r} has no best model yet (no finished trial)", code=1)


def task_of(record: StudyRecord, command: str) -> Task:
    """The study's task, refusing ``command`` for one whose models only the user's code reads."""
    task = load_task(str(stored_config(record.config_yaml).get("task", {}).get("name", DEFAULT_TASK)))
    if task.info.user_function:
        fail(f"hpo {command}: study {record.name!r} trains its own code (task=custom), whose models hpo cannot "
             "load; its best trial's files are the artifact best_model/ of the study's MLflow run", code=1)
    return task


def _facts(registry: Registry, record: StudyRecord, storage: StorageSpec, folder: Path, task: Task) -> ModelFacts:
    cfg = stored_config(record.config_yaml)
    trial = registry.trial(record.name, record.best_trial_number) if record.best_trial_number is not None else None
    best_epoch, metrics = None, {}
    if trial is not None and trial.values:
        best_epoch = min(e for e, v in trial.values.items() if v == trial.best_metric)
        if trial.mlflow_run_id:
            reader = client(storage.tracking_uri)
            for key in task.info.metrics:
                for m in reader.get_metric_history(trial.mlflow_run_id, key):
                    if m.step == best_epoch:
                        metrics[key] = m.value
    data = {"train": cfg.data.train_path, "validation": cfg.data.validation_path,
            "train_limit": cfg.data.train_limit, "validation_limit": cfg.data.validation_limit,
            "max_length": cfg.trainer.max_length}
    return ModelFacts(study=record.name, trial=record.best_trial_number, base_model=str(cfg.model.name_or_path),
                      task=task.info.name, model=task.describe_model(folder),
                      params=dict(record.best_params or {}), metrics=metrics, metric=record.metric,
                      best_epoch=best_epoch, data={k: v for k, v in data.items() if v is not None})


def validation_inputs(record: StudyRecord, task: Task, rows: int) -> list:
    """The study's first validation rows, as the model's predictor takes them."""
    cfg = stored_config(record.config_yaml)
    try:
        source = data_spec(cfg, task).source(int(cfg.study.seed))
    except ConfigError as err:
        fail(f"cannot read the study's validation rows to check the export against: {err}", code=1)
    return task.sample_inputs(source, rows)


def cmd_export(args: Namespace) -> None:
    registry = open_registry(args)
    record = require(registry, args.name)
    storage, out = stored_storage(record, [registry.url]), Path(args.to).resolve()
    task = task_of(record, "export")
    with best_model_folder(record, storage, model_uri_of(record, args.model_uri)) as folder:
        try:
            export_folder(folder, out, model_card(_facts(registry, record, storage, folder, task)))
        except FileExistsError as err:
            fail(str(err))
    print(f"exported {record.name} to {out} (the model's folder, model card README.md)")
    if args.onnx:
        inputs = validation_inputs(record, task, CHECK_ROWS)
        try:
            gap = export_checked_onnx(task, out, out / "model.onnx", inputs)
        except ExportMismatch as err:
            fail(str(err), code=1)
        print(f"  {out / 'model.onnx'}: outputs within {gap:.1e} of PyTorch's on {len(inputs)} validation rows "
              "(onnxruntime)")


def _rows(args: Namespace) -> list[str]:
    if args.texts:
        return list(args.texts)
    source = open(args.file, encoding="utf-8") if args.file else sys.stdin  # noqa: SIM115 - closed below
    try:
        return [line.rstrip("\n") for line in source if line.strip()]
    finally:
        if args.file:
            source.close()


def _fields(row: str) -> str | tuple[str, ...]:
    """A row given on the command line: tab-separated fields (a pair of texts) or one value."""
    return tuple(row.split("\t")) if "\t" in row else row


def cmd_predict(args: Namespace) -> None:
    """Tab-separated: label and one probability per class (or the score), then the row (a header first)."""
    registry = open_registry(args)
    record = require(registry, args.name)
    task_of(record, "predict")
    uri = model_uri_of(record, args.model_uri)
    if uri is None:
        fail(f"study {record.name!r} registered no model; pass --model-uri (e.g. runs:/<run id>/best_model)", code=1)
    rows = _rows(args)
    if not rows:
        fail("no rows: pass them as arguments, with --file, or on stdin (one per line; a pair as two tab-separated "
             "texts)")
    model = load_model(stored_storage(record, [registry.url]).tracking_uri, uri)
    try:
        frame = pd.DataFrame(model.predict([_fields(r) for r in rows]))
    except ValueError as err:
        fail(str(err).splitlines()[0])
    print("\t".join([*frame.columns, "input"]))
    for given, row in zip(rows, frame.itertuples(index=False), strict=True):
        print("\t".join([*(v if isinstance(v, str) else f"{v:.4f}" for v in row), given]))


def cmd_refit(args: Namespace) -> None:
    register()
    registry = open_registry(args)
    task_of(require(registry, args.name), "refit")
    try:
        uri = refit(registry, args.name, list(args.overrides), args.with_validation, prepare_with_teacher)
    except ConfigError as err:
        fail(f"config error: {err}")
    except RegistryError as err:
        fail(str(err), code=1)
    print(f"refit of {args.name} registered as {uri} (alias refit; champion is unchanged)")


def cmd_ensemble(args: Namespace) -> None:
    register()
    registry = open_registry(args)
    record = require(registry, args.name)
    task_of(record, "ensemble")
    if args.top < 2:
        fail("--top must be at least 2 (one trial is the study's best model already)")
    try:
        result = ensemble_top(registry, args.name, args.top, prepare_study_data)
    except ConfigError as err:
        fail(f"config error: {err}")
    except RegistryError as err:
        fail(str(err), code=1)
    metric = record.metric
    for number, value in result.members:
        print(f"  trial {number}: {metric} {value:.4f} (in the search)")
    gain = result.metrics[metric] - result.best_member[metric]
    print(f"ensemble of {len(result.members)}: {metric} {result.metrics[metric]:.4f} vs best member "
          f"{result.best_member[metric]:.4f} ({gain:+.4f}); registered as {result.model_uri} (alias ensemble)")
