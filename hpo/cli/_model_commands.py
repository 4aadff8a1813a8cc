"""The commands that use a study's best model: ``hpo export`` (a Hugging Face folder with a model card, and
ONNX), ``hpo predict`` (texts in, labels and probabilities out) and ``hpo refit`` (the best config trained again
and registered). They read the registry and MLflow; ``refit`` writes its own MLflow run."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoConfig

from hpo.cli._common import fail, open_registry, require
from hpo.config.compose import stored_config, stored_storage
from hpo.config.resolvers import register
from hpo.config.spec import StorageSpec
from hpo.errors import ConfigError
from hpo.inference import load, logits
from hpo.models.card import ModelFacts, model_card
from hpo.models.ensemble import ensemble_top
from hpo.models.export import export_folder, export_onnx, onnx_logits
from hpo.models.refit import refit
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry, RegistryError, StudyRecord
from hpo.stores.tracking import client, download_model, load_model
from hpo.study.data import prepare_study_data
from trainers.data import read_csv

ONNX_TOLERANCE = 1e-4
CHECK_ROWS = 64  # validation rows the ONNX export is checked on


def model_uri_of(record: StudyRecord, given: str | None) -> str | None:
    """``--model-uri``, else the study's champion when it registered a model."""
    return given or (f"models:/{record.name}@champion" if record.best_model_uri else None)


@contextlib.contextmanager
def best_model_folder(record: StudyRecord, storage: StorageSpec, model_uri: str | None) -> Iterator[Path]:
    """A local folder holding the model (``TextClassifier.save`` layout): the registered one, or the study's best
    checkpoint when it registered none (a study that was stopped)."""
    if model_uri:
        with tempfile.TemporaryDirectory(prefix="hpo-model-") as tmp:
            yield download_model(storage.tracking_uri, model_uri, tmp)
    elif record.best_checkpoint:
        with CheckpointStore(storage.checkpoints).full_model(record.best_checkpoint) as folder:
            yield Path(folder)
    else:
        fail(f"study {record.name!r} has no best model yet (no finished trial)", code=1)


def _facts(registry: Registry, record: StudyRecord, storage: StorageSpec, folder: Path) -> ModelFacts:
    cfg = stored_config(record.config_yaml)
    config = AutoConfig.from_pretrained(str(folder))
    trial = registry.trial(record.name, record.best_trial_number) if record.best_trial_number is not None else None
    best_epoch, metrics = None, {}
    if trial is not None and trial.values:
        best_epoch = min(e for e, v in trial.values.items() if v == trial.best_metric)
        if trial.mlflow_run_id:
            reader = client(storage.tracking_uri)
            for key in ("val_loss", "val_accuracy", "val_f1_macro", "val_auc"):
                for m in reader.get_metric_history(trial.mlflow_run_id, key):
                    if m.step == best_epoch:
                        metrics[key] = m.value
    data = {"train": cfg.data.train_path, "validation": cfg.data.validation_path,
            "train_limit": cfg.data.train_limit, "validation_limit": cfg.data.validation_limit,
            "max_length": cfg.trainer.max_length}
    return ModelFacts(study=record.name, trial=record.best_trial_number, base_model=str(cfg.model.name_or_path),
                      pooling=getattr(config, "hpo_pooling", "cls"),
                      labels=[config.id2label[i] for i in range(len(config.id2label))],
                      params=dict(record.best_params or {}), metrics=metrics, metric=record.metric,
                      best_epoch=best_epoch, data={k: v for k, v in data.items() if v is not None})


def validation_texts(record: StudyRecord, rows: int) -> list[str]:
    cfg = stored_config(record.config_yaml)
    return read_csv(cfg.data.validation_path, cfg.data.text_column, cfg.data.label_column)[0][:rows]


def cmd_export(args: Namespace) -> None:
    registry = open_registry(args)
    record = require(registry, args.name)
    storage, out = stored_storage(record, [registry.url]), Path(args.to).resolve()
    with best_model_folder(record, storage, model_uri_of(record, args.model_uri)) as folder:
        try:
            export_folder(folder, out, model_card(_facts(registry, record, storage, folder)))
        except FileExistsError as err:
            fail(str(err))
    print(f"exported {record.name} to {out} (Hugging Face folder, model card README.md)")
    if args.onnx:
        target = export_onnx(out, out / "model.onnx")
        tokenizer, classifier = load(out)
        texts = validation_texts(record, CHECK_ROWS)
        reference = logits(tokenizer, classifier, texts).numpy()
        diff = float(np.abs(onnx_logits(target, tokenizer, texts) - reference).max())
        if diff > ONNX_TOLERANCE:
            fail(f"ONNX logits differ from PyTorch's by {diff:.2e} (> {ONNX_TOLERANCE}) on {len(texts)} "
                 "validation rows; the ONNX file is not to be trusted", code=1)
        print(f"  {target}: logits within {diff:.1e} of PyTorch's on {len(texts)} validation rows (onnxruntime)")


def _texts(args: Namespace) -> list[str]:
    if args.texts:
        return list(args.texts)
    source = open(args.file, encoding="utf-8") if args.file else sys.stdin  # noqa: SIM115 - closed below
    try:
        return [line.rstrip("\n") for line in source if line.strip()]
    finally:
        if args.file:
            source.close()


def cmd_predict(args: Namespace) -> None:
    """Tab-separated: label, one probability per class, the text (a header first)."""
    registry = open_registry(args)
    record = require(registry, args.name)
    uri = model_uri_of(record, args.model_uri)
    if uri is None:
        fail(f"study {record.name!r} registered no model; pass --model-uri (e.g. runs:/<run id>/best_model)", code=1)
    texts = _texts(args)
    if not texts:
        fail("no texts: pass them as arguments, with --file, or on stdin (one per line)")
    frame = pd.DataFrame(load_model(stored_storage(record, [registry.url]).tracking_uri, uri).predict(texts))
    print("\t".join([*frame.columns, "text"]))
    for text, row in zip(texts, frame.itertuples(index=False), strict=True):
        print("\t".join([str(row[0]), *(f"{p:.4f}" for p in row[1:]), text]))


def cmd_refit(args: Namespace) -> None:
    register()
    registry = open_registry(args)
    require(registry, args.name)
    try:
        uri = refit(registry, args.name, list(args.overrides), args.with_validation, prepare_study_data)
    except ConfigError as err:
        fail(f"config error: {err}")
    except RegistryError as err:
        fail(str(err), code=1)
    print(f"refit of {args.name} registered as {uri} (alias refit; champion is unchanged)")


def cmd_ensemble(args: Namespace) -> None:
    register()
    registry = open_registry(args)
    record = require(registry, args.name)
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
