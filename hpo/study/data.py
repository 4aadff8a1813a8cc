"""A study's data, read and prepared once for all its trials by its task (and cached for later studies): one
prepared copy per model when the model is searched (each model reads the rows its own way).
Checks what only the data can tell (labels too rare for the folds, AUC on a multi-class task) before anything runs.
hpo never looks inside the rows: it passes them from the task to the trials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.config.model_choice import StudyData
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from trainers.tasks import SourceError, load_task


def prepare_study_data(spec: StudySpec, log: Callable[[str], None] = print) -> StudyData:
    """Prepares the data once for every trial (and caches it for later studies); when the model is searched, once
    per model choice. None for a task that reads its own data (task=custom)."""
    if spec.data is None:
        log("data: read by the study's own training function (task.fn)")
        return None
    if spec.models:
        return {name: _prepared(spec, c.model.name_or_path, log) for name, c in spec.models.items()}
    return _prepared(spec, spec.model.name_or_path, log)


def _prepared(spec: StudySpec, model: str, log: Callable[[str], None]) -> Any:
    d = spec.data
    assert d is not None, "a task that reads no data prepares none"
    try:
        data = load_task(spec.task).prepare(d.source(spec.study.seed), model, max_length=spec.trainer.max_length,
                                            cache_dir=spec.storage.cache_dir / "prepared")
    except SourceError as err:
        raise ConfigError(err.key, err.message) from None
    profile = data.profile(data.train)
    if counts := profile.get("label_counts"):
        smallest = min(counts.values())
        if d.cv_folds and d.cv_folds > smallest:
            raise ConfigError("data.cv_folds", f"{d.cv_folds} folds need at least {d.cv_folds} training rows of "
                                               f"every label; the rarest has {smallest}: use fewer folds or more rows")
        if spec.objective.metric == "val_auc" and len(counts) != 2:
            raise ConfigError("study.metric", f"val_auc needs a binary task; this data has {len(counts)} labels")
        what = f"labels {list(counts)}"
    else:
        what = f"targets {profile['target_min']:.4g} to {profile['target_max']:.4g}"
    log(f"data: {len(data.train)} train / {len(data.validation)} validation rows, {what}"
        + (f" (as {Path(model).name} reads them)" if spec.models else ""))
    return data
