"""k-fold cross-validation as a trial's objective (``data.cv_folds: k``), for datasets too small for one split.

The training rows are cut into k stratified, seeded folds; k models train **in lockstep**, one epoch each in turn,
and every epoch reports the mean over folds of each held-out metric. A scheduler (ASHA) and Optuna's pruning thus
judge the fold mean per epoch, the same quantity the study optimizes, not one fold's noisier curve. The
validation split plays no part in selection: it is kept for the final word on the winner (``hpo refit`` trains it
on every training row and reports it there).

Each fold advances one epoch through :func:`trainers.fine_tune` itself, resumed from its own checkpoint
(``until_epoch``), so a fold trains exactly as an uninterrupted run would. A CV checkpoint is a normal one (summary,
resume state, ``best/``) with ``folds/fold_<i>/`` holding each fold's checkpoint; its ``best/`` is fold 0's model
at the best epoch of the fold mean (trained on (k-1)/k of the rows). Example::

    >>> [len(held_out) for _, held_out in folds([0] * 6 + [1] * 3, k=3, seed=0)]
    [3, 3, 3]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from sklearn.model_selection import KFold, StratifiedKFold

from trainers import checkpoint, compact
from trainers.checkpoint import FOLDS_DIR
from trainers.config import REGRESSION_METRICS, VALIDATION_METRICS, TrainConfig
from trainers.data import PreparedData
from trainers.reporting import Reporter

_AVERAGED = (*VALIDATION_METRICS, *REGRESSION_METRICS[1:], "train_loss", "train_examples_per_s", "latency_ms",
             "trainable_params", "model_mb")


def folds(labels: list, k: int, seed: int, stratified: bool = True) -> list[tuple[list[int], list[int]]]:
    """(training rows, held-out rows) per fold, seeded: stratified (each fold keeps the label shares), or plain for
    float targets (regression), which have no classes to keep."""

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed) if stratified \
        else KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(train.tolist(), held.tolist()) for train, held in splitter.split(labels, labels)]


class _Latest:
    """A fold's reporter: its epoch's metrics and a copy of its checkpoint (to resume the next epoch from)."""

    def __init__(self, keep: Path) -> None:
        self.keep: Path = keep
        self.metrics: dict[str, float] = {}

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.metrics = dict(metrics)
        assert checkpoint_dir is not None, "a fold's trainer checkpoints every epoch"
        fresh = self.keep.with_name(self.keep.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(checkpoint_dir, fresh)
        shutil.rmtree(self.keep, ignore_errors=True)
        fresh.rename(self.keep)


def cross_validate(cfg: TrainConfig, data: PreparedData, reporter: Reporter,
                   train: Callable[[TrainConfig, PreparedData, Reporter], Any]) -> dict[str, float]:
    """Trains ``cfg.cv_folds`` fold models in lockstep; reports each epoch's fold means; returns the best epoch's."""
    k = cfg.cv_folds
    splits = folds(data.train.labels, k, cfg.seed, stratified=not data.regression)
    fold_data = [dataclasses.replace(data, train=data.train.subset(train), validation=data.train.subset(held))
                 for train, held in splits]
    work = Path(tempfile.mkdtemp(prefix="hpo-cv-"))
    state: dict[str, Any] = {"epoch": 0, "best": None, "epochs_without_improvement": 0}
    if cfg.resume_from:
        resumed = Path(cfg.resume_from)
        state = torch.load(resumed / checkpoint.STATE_FILE, weights_only=True)
        shutil.copytree(resumed / FOLDS_DIR, work / FOLDS_DIR)
        shutil.copytree(resumed / checkpoint.BEST_DIR, work / checkpoint.BEST_DIR)
        if state["epoch"] >= cfg.max_epochs or state.get("stopped"):  # interrupted after its last report
            reporter.report(checkpoint.read_summary(resumed)["metrics"], resumed)
            shutil.rmtree(work, ignore_errors=True)
            return state["best"]
    fold_cfg = dataclasses.replace(cfg, cv_folds=0, early_stopping_patience=None)
    try:
        for epoch in range(state["epoch"] + 1, cfg.max_epochs + 1):
            per_fold = []
            for i, one in enumerate(fold_data):
                latest = work / FOLDS_DIR / f"fold_{i}"
                fold = _Latest(latest)
                train(dataclasses.replace(fold_cfg, until_epoch=epoch,
                                              resume_from=str(latest) if epoch > 1 else None), one, fold)
                per_fold.append(fold.metrics)
            state, metrics = _record_epoch(cfg, state, epoch, per_fold, work)
            with tempfile.TemporaryDirectory(prefix="hpo-cv-ckpt-") as tmp:
                reporter.report(metrics, _write(Path(tmp), work, state, metrics))
            if state.get("stopped"):
                break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return state["best"]


def _record_epoch(cfg: TrainConfig, state: dict, epoch: int, per_fold: list[dict], work: Path) -> tuple[dict, dict]:
    """The epoch's fold means, whether they improved (then ``best/`` takes fold 0's model) and early stopping."""
    metrics = {key: statistics.fmean(m[key] for m in per_fold) for key in _AVERAGED if all(key in m for m in per_fold)}
    metrics.update(epoch=epoch, cv_folds=float(cfg.cv_folds),
                   cv_sd=statistics.stdev(m[cfg.metric] for m in per_fold) if len(per_fold) > 1 else 0.0)
    best = state["best"]
    improved = cfg.objective.better(metrics[cfg.metric], best[cfg.metric] if best else None)
    metrics["improved"] = float(improved)
    waited = 0 if improved else state["epochs_without_improvement"] + 1
    stopped = bool(cfg.early_stopping_patience and waited >= cfg.early_stopping_patience and epoch < cfg.max_epochs)
    if stopped:
        metrics["early_stopped"] = 1.0
    if improved:
        best = metrics
        fold0, best_dir = work / FOLDS_DIR / "fold_0", work / checkpoint.BEST_DIR
        shutil.rmtree(best_dir, ignore_errors=True)
        best_dir.mkdir()
        for name in (compact.CONFIG_FILE, compact.BASE_FILE):
            shutil.copy2(fold0 / name, best_dir / name)
        shutil.copy2(checkpoint.weights_of(fold0), best_dir / compact.WEIGHTS_FILE)
    return {"epoch": epoch, "best": best, "epochs_without_improvement": waited, "stopped": stopped}, metrics


def _write(directory: Path, work: Path, state: dict, metrics: dict) -> Path:
    """The trial's checkpoint: every fold's, ``best/``, the CV state and the summary (written last)."""
    shutil.copytree(work / FOLDS_DIR, directory / FOLDS_DIR)
    shutil.copytree(work / checkpoint.BEST_DIR, directory / checkpoint.BEST_DIR)
    shutil.copy2(work / FOLDS_DIR / "fold_0" / compact.CONFIG_FILE, directory / compact.CONFIG_FILE)
    shutil.copy2(work / FOLDS_DIR / "fold_0" / compact.BASE_FILE, directory / compact.BASE_FILE)
    torch.save(state, directory / checkpoint.STATE_FILE)
    files = {p.relative_to(directory).as_posix(): p.stat().st_size for p in directory.rglob("*") if p.is_file()}
    summary = {"epoch": state["epoch"], "metrics": metrics, "files": files}
    (directory / checkpoint.SUMMARY_FILE).write_text(json.dumps(summary))
    return directory
