"""What a study ended with, read back from the registry, and the report ``hpo sweep``/``hpo resume`` print."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hpo.config.spec import StudySpec
from hpo.secrets import redact_url
from hpo.states import StudyStatus
from hpo.stores.registry import Registry, StudyRecord, TrialRecord


@dataclass(frozen=True)
class StudyOutcome:
    name: str
    metric: str
    status: StudyStatus
    stop_reason: str | None
    best_value: float | None
    best_params: dict[str, Any]
    best_trial_number: int | None
    best_checkpoint: str | None
    model_uri: str | None
    trial_states: dict[str, int]
    epochs_used: int
    epochs_max: int
    wall_s: float
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    optuna_url: str
    notes: list[str] = field(default_factory=list)
    exit_code: int | None = None  # 128 + the signal that stopped the study (SIGTERM 143, Ctrl-C 130)


def outcome_of(record: StudyRecord, trials: list[TrialRecord], spec: StudySpec, wall_s: float) -> StudyOutcome:
    notes = []
    if record.best_metric is None:
        notes.append("no trial reported a result: see the failed trials' errors in MLflow and Ray's logs")
    return StudyOutcome(
        name=record.name, metric=record.metric, status=record.status, stop_reason=record.stop_reason,
        best_value=record.best_metric, best_params=record.best_params or {},
        best_trial_number=record.best_trial_number, best_checkpoint=record.best_checkpoint,
        model_uri=record.best_model_uri, trial_states=dict(Counter(t.state.value for t in trials)),
        epochs_used=sum(t.epochs for t in trials), epochs_max=spec.study.num_samples * spec.trainer.max_epochs,
        wall_s=wall_s, tracking_uri=spec.storage.tracking_uri, experiment_id=record.mlflow_experiment_id,
        parent_run_id=record.mlflow_parent_run_id, optuna_url=spec.storage.optuna_url, notes=notes,
    )


def format_params(params: dict[str, Any]) -> str:
    """``learning_rate=3e-05 batch_size=16 ...``: floats to three significant digits."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def format_summary(o: StudyOutcome) -> str:
    lines = [f"\n=== study {o.name}: {o.status.value} in {o.wall_s / 60:.1f} min ==="]
    if o.stop_reason:
        lines.append(f"reason: {o.stop_reason}")
    if o.best_value is not None:
        lines.append(f"best {o.metric}: {o.best_value:.4f}  (trial {o.best_trial_number})")
        lines.append("best params:")
        lines += [f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}"
                  for k, v in sorted(o.best_params.items())]
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(o.trial_states.items())))
    if o.epochs_used and o.status == StudyStatus.COMPLETED:
        saved = 1 - o.epochs_used / o.epochs_max
        lines.append(f"epochs trained: {o.epochs_used} of {o.epochs_max} ({saved:.0%} saved by early stopping)")
    elif o.epochs_used:
        lines.append(f"epochs trained: {o.epochs_used} of {o.epochs_max}")
    if o.best_checkpoint:
        lines.append(f"best checkpoint: {o.best_checkpoint}")
    if o.model_uri:
        lines.append(f"best model: {o.model_uri}")
    lines.append(f"MLflow: {redact_url(o.tracking_uri)}  experiment {o.experiment_id}, study run {o.parent_run_id}")
    if o.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: hpo ui {o.name} --open   (or: make ui)")
    optuna_url = redact_url(o.optuna_url)
    lines.append(f"Optuna: {optuna_url}  (optuna-dashboard {optuna_url})")
    lines += [f"note: {n}" for n in o.notes]
    if o.status == StudyStatus.STOPPED:
        lines.append(f"resume: hpo resume {o.name}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StudyBest:
    """A study's best trial as its registry holds it: what ``hpo best`` prints, for Python callers."""

    name: str
    status: StudyStatus
    metric: str
    value: float | None  # None: no trial has finished yet
    params: dict[str, Any]
    trial_number: int | None
    checkpoint: str | None
    model_uri: str | None  # models:/NAME/VERSION when the study registered its best model


def best_of(name: str, registry_url: str) -> StudyBest:
    """Reads study ``name``'s best trial from the registry at ``registry_url`` (raises ``RegistryError`` for an
    unknown study). A study still running answers with its best so far."""
    record = Registry.open(registry_url).require(name)
    return StudyBest(record.name, record.status, record.metric, record.best_metric, dict(record.best_params or {}),
                     record.best_trial_number, record.best_checkpoint, record.best_model_uri)
