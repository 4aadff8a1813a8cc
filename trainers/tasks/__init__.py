"""Fine-tuning tasks, one module each, behind one contract (:mod:`trainers.tasks.base`).

``task=`` in a study's config names one of :data:`TASKS`; hpo reads its :class:`~trainers.tasks.base.TaskInfo`
to check the config (no torch imported) and calls :func:`load_task` for the task itself. Example::

    >>> task_info("text_regression").default_metric
    'val_spearman'
    >>> sorted(TASKS)
    ['custom', 'image_classification', 'text_classification', 'text_regression']
"""

from __future__ import annotations

import importlib

from trainers.config import REGRESSION_METRICS, VALIDATION_METRICS
from trainers.tasks.base import DataSource, Predictor, ResolvedModel, SourceError, Task, TaskInfo

TASKS: dict[str, TaskInfo] = {
    "text_classification": TaskInfo(
        "text_classification", "trainers.tasks.text:TextTask", VALIDATION_METRICS, "val_accuracy", "max",
        doc="a label per text (or per pair of texts: data.text_pair_column)"),
    "text_regression": TaskInfo(
        "text_regression", "trainers.tasks.text:TextTask", REGRESSION_METRICS, "val_spearman", "max",
        regression=True, doc="a number per text or pair of texts (similarity, rating, score)"),
    "image_classification": TaskInfo(
        "image_classification", "trainers.tasks.image:ImageTask", VALIDATION_METRICS, "val_accuracy", "max",
        doc="a label per image: an ImageNet backbone on image-folder data"),
    "custom": TaskInfo(
        "custom", "trainers.tasks.custom:CustomTask", (), "", "max", user_function=True,
        doc="the user's own training function (task.fn): any metrics, any search space"),
}
DEFAULT_TASK = "text_classification"

__all__ = ["DEFAULT_TASK", "TASKS", "DataSource", "Predictor", "ResolvedModel", "SourceError", "Task", "TaskInfo",
           "load_task", "task_info"]


def task_info(name: str) -> TaskInfo:
    """The task named ``name``; a KeyError naming the tasks there are."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; the tasks are {sorted(TASKS)}")
    return TASKS[name]


def load_task(name: str) -> Task:
    """The task's implementation, imported now (it imports torch and the task's libraries): a registry by name,
    as ``hpo``'s CLI names its commands, so choosing a task costs nothing until it runs."""
    info = task_info(name)
    module, cls = info.implementation.split(":")
    return getattr(importlib.import_module(module), cls)(info)
