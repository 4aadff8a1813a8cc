"""A study's data, read and tokenized once for all its trials (and cached for later studies): one
:class:`~trainers.PreparedData` per model when the model is searched, each with that model's tokenizer. Checks
what only the data can tell (labels too rare for the folds, AUC on a multi-class task) before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hpo.config.model_choice import StudyData
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from trainers.data import DataError, PreparedData, prepare_data


def prepare_study_data(spec: StudySpec, log: Callable[[str], None] = print) -> StudyData:
    """Reads and tokenizes the data once for every trial (and caches it for later studies); when the model is
    searched, once per model choice (each with its own tokenizer)."""
    if spec.models:
        return {name: _tokenized(spec, c.model.name_or_path, log) for name, c in spec.models.items()}
    return _tokenized(spec, spec.model.name_or_path, log)


def _tokenized(spec: StudySpec, tokenizer: str, log: Callable[[str], None]) -> PreparedData:
    d = spec.data
    try:
        data = prepare_data(
            d.train_path, d.validation_path, tokenizer,
            text_column=d.text_column, label_column=d.label_column, max_length=spec.trainer.max_length,
            train_limit=d.train_limit, validation_limit=d.validation_limit,
            seed=spec.study.seed if d.seed is None else d.seed, stratify=d.stratify,
            cache_dir=spec.storage.cache_dir / "tokenized",
        )
    except DataError as err:
        key = "data.validation_path" if str(d.validation_path) in str(err) else "data.train_path"
        raise ConfigError(key, str(err)) from None
    smallest = min(data.train.labels.count(i) for i in range(data.num_labels))
    if d.cv_folds and d.cv_folds > smallest:
        raise ConfigError("data.cv_folds", f"{d.cv_folds} folds need at least {d.cv_folds} training rows of every "
                                           f"label; the rarest has {smallest}: use fewer folds or more rows")
    if spec.objective.metric == "val_auc" and data.num_labels != 2:
        raise ConfigError("study.metric", f"val_auc needs a binary task; this data has {data.num_labels} labels")
    log(f"data: {len(data.train)} train / {len(data.validation)} validation rows, "
        f"labels {list(data.label_names)}" + (f" ({Path(tokenizer).name}'s tokens)" if spec.models else ""))
    return data
