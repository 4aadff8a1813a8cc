"""``task=custom``: the user's own training function, any PyTorch code, with everything else from hpo.

The contract (docs/custom-task.md)::

    def train(params: dict, trial) -> None:
        # params: what the search sampled (the names the user declared under search.*)
        # trial.max_epochs, trial.seed, trial.device ("cuda" or "cpu"), trial.num_threads
        # trial.rank, trial.world_size: a trial run as a DDP group (resources.workers_per_trial): the process group
        # is set up (torch.distributed); shard the data and wrap the model yourself; only rank 0's reports count
        # trial.resume_from: the folder of the latest checkpoint it reported (None on a fresh start)
        for epoch in range(start, trial.max_epochs):
            ...
            trial.report({"val_loss": ..., "val_acc": ...}, checkpoint_dir=folder)   # once per epoch

hpo wraps each report into its own checkpoint layout (:mod:`trainers.checkpoint`): the user's folder under
``user/``, the trial's epoch and best-so-far beside it, and ``best/`` a copy of the user's folder at the best epoch,
so the ledger, the schedulers, retention and ``hpo resume`` treat a custom trial as any other. A study metric the
function never reports fails the trial with that sentence; an exception fails the trial (its traceback in the log
and in the trial's MLflow run) and the study goes on. Example::

    >>> resolve_function("math:floor")
    Traceback (most recent call last):
    ...
    trainers.tasks.base.SourceError: task.fn: math:floor takes (x), not (params, trial): define floor(params, trial)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from trainers import checkpoint
from trainers.config import TrainConfig
from trainers.distributed import Workers
from trainers.reporting import Reporter
from trainers.tasks.base import SourceError, TaskInfo

USER_DIR = "user"  # the user's own checkpoint files, inside hpo's checkpoint folder


class MetricNotReported(RuntimeError):
    """The study's metric is not among what the function reports."""


def resolve_function(spec: str, search_path: str | None = None) -> Callable[..., Any]:
    """``package.module:function`` imported (``search_path`` first on ``sys.path`` when it is not importable
    otherwise) and checked to take ``(params, trial)``; :class:`SourceError` for ``task.fn`` otherwise."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise SourceError("task.fn", f"{spec!r} is not package.module:function; e.g. task.fn=mypkg.train:train")
    for folder in (search_path, os.getcwd()):  # where the driver found it; where hpo runs (a console script's
        if folder and folder not in sys.path and importlib.util.find_spec(module_name.split(".")[0]) is None:
            sys.path.insert(0, folder)  # sys.path lacks the working directory)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 (any error of the user's module is theirs to fix)
        raise SourceError("task.fn", f"cannot import {module_name!r}: {type(err).__name__}: {err}; put it on "
                                     "PYTHONPATH or run hpo from the folder holding it") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise SourceError("task.fn", f"{module_name} has no function {name!r}")
    try:
        inspect.signature(function).bind({}, None)
    except TypeError:
        raise SourceError("task.fn", f"{spec} takes ({', '.join(inspect.signature(function).parameters)}), not "
                                     f"(params, trial): define {name}(params, trial)") from None
    except ValueError:
        pass  # a builtin without a signature: it is called as it is
    return function


def search_path_of(spec: str) -> str | None:
    """The folder to put on ``sys.path`` so that a Ray worker imports ``spec``'s module as the driver did."""
    module = sys.modules.get(spec.partition(":")[0])
    file = getattr(module, "__file__", None)
    if not file:
        return None
    depth = spec.partition(":")[0].count(".") + (1 if Path(file).name == "__init__.py" else 0)
    return str(Path(file).resolve().parents[depth])


class CustomTrial:
    """What the user's function is given: the trial's settings and :meth:`report`."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter, state: dict[str, Any], resume_from: str | None,
                 best_dir: Path) -> None:
        self.max_epochs, self.seed, self.num_threads = cfg.max_epochs, cfg.seed, cfg.num_threads
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.resume_from = resume_from
        workers = Workers.current()
        self.rank, self.world_size = workers.rank, workers.size
        self._cfg, self._reporter, self._state, self._best_dir = cfg, reporter, state, best_dir

    @property
    def epoch(self) -> int:
        """Epochs reported so far (over resumes): the next report is epoch ``epoch + 1``."""
        return int(self._state["epoch"])

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | Path | None = None) -> None:
        """One epoch's metrics, and optionally a folder holding what resuming needs (copied now: it may change
        after the call)."""
        cfg, state = self._cfg, self._state
        values = {k: float(v) for k, v in metrics.items()}
        if cfg.metric not in values:
            raise MetricNotReported(f"study.metric {cfg.metric!r} is not among the reported metrics {sorted(values)}"
                                    f"; report it from task.fn, or set study.metric to one of them")
        epoch = state["epoch"] + 1
        best = state["best"]
        improved = cfg.objective.better(values[cfg.metric], best[cfg.metric] if best else None)
        values.update(epoch=epoch, improved=float(improved))
        state.update(epoch=epoch, best=values if improved else best, history=[*state.get("history", []), values])
        if checkpoint_dir is None or self.rank != 0:  # in a group, rank 0 writes the checkpoints
            self._reporter.report(values, None)
            return
        if improved:
            shutil.rmtree(self._best_dir, ignore_errors=True)
            shutil.copytree(checkpoint_dir, self._best_dir)
        with tempfile.TemporaryDirectory(prefix="hpo-custom-") as tmp:
            folder = Path(tmp)
            shutil.copytree(checkpoint_dir, folder / USER_DIR)
            shutil.copytree(self._best_dir, folder / checkpoint.BEST_DIR)
            torch.save({"epoch": epoch, "best": state["best"], "history": state["history"]},
                       folder / checkpoint.STATE_FILE)
            files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
            (folder / checkpoint.SUMMARY_FILE).write_text(json.dumps({"epoch": epoch, "metrics": values,
                                                                      "files": files, "history": state["history"]}))
            self._reporter.report(values, folder)


class CustomTask:
    """Runs ``cfg.function`` once per trial; no data, models or exports of its own (those refuse, saying so)."""

    def __init__(self, info: TaskInfo) -> None:
        self.info = info

    def fine_tune(self, cfg: TrainConfig, data: Any, reporter: Reporter) -> dict[str, float] | None:
        function = resolve_function(cfg.function, cfg.function_path or None)
        state: dict[str, Any] = {"epoch": 0, "best": None}
        with tempfile.TemporaryDirectory(prefix="hpo-custom-best-") as work:
            best_dir, user_resume = Path(work) / checkpoint.BEST_DIR, None
            best_dir.mkdir()  # empty until an epoch with a checkpoint improves
            if cfg.resume_from:
                resumed = Path(cfg.resume_from)
                state = torch.load(resumed / checkpoint.STATE_FILE, weights_only=True)
                if state["epoch"] >= cfg.max_epochs:  # interrupted after its last report: report it again
                    reporter.report(checkpoint.read_summary(resumed)["metrics"], resumed)
                    return state["best"]
                user_resume = str(resumed / USER_DIR)
                shutil.rmtree(best_dir)
                shutil.copytree(resumed / checkpoint.BEST_DIR, best_dir)
            if cfg.num_threads:
                torch.set_num_threads(cfg.num_threads)
            torch.manual_seed(cfg.seed)
            function(dict(cfg.params), CustomTrial(cfg, reporter, state, user_resume, best_dir))
        return state["best"]

    def _refuse(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{what} needs a model hpo can load; task=custom trains the user's own code, "
                                   "whose checkpoints only that code reads")

    def resolve_model(self, *args: Any) -> Any:
        raise self._refuse("model=")

    def prepare(self, *args: Any, **kwargs: Any) -> None:
        return None  # the function reads its own data

    def check_source(self, *args: Any) -> None:
        return None

    def validation_outputs(self, *args: Any) -> Any:
        raise self._refuse("hpo ensemble")

    def training_outputs(self, *args: Any) -> Any:
        raise self._refuse("distillation (a teacher)")

    def with_teacher(self, *args: Any) -> Any:
        raise self._refuse("distillation (a student)")

    def combine(self, *args: Any) -> Any:
        raise self._refuse("hpo ensemble")

    def metrics(self, *args: Any) -> Any:
        raise self._refuse("hpo ensemble")

    def predictor(self, *args: Any) -> Any:
        raise self._refuse("hpo predict and the registered model")

    def sample_inputs(self, *args: Any) -> Any:
        raise self._refuse("hpo export")

    def export_onnx(self, *args: Any) -> Any:
        raise self._refuse("hpo export --onnx")

    def onnx_gap(self, *args: Any) -> Any:
        raise self._refuse("hpo export --onnx")

    def describe_model(self, *args: Any) -> Any:
        raise self._refuse("hpo export")
