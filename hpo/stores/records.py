"""The registry's tables (SQLAlchemy 2.x models): a study, its trials, and its confirmation reruns.

States are :mod:`hpo.states` enums, stored by value; :mod:`hpo.stores.registry` reads and writes them and Alembic
(``hpo/stores/migrations``) keeps stores written by older hpo versions up to date with them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hpo.states import StudyStatus, TrialState


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _by_value(enum: type) -> Enum:
    """An enum column holding the members' values (``'running'``), as v2 stored the bare strings."""
    return Enum(enum, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    pass


class StudyRecord(Base):
    __tablename__ = "hpo_studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    config_yaml: Mapped[str] = mapped_column(Text)
    status: Mapped[StudyStatus] = mapped_column(_by_value(StudyStatus), default=StudyStatus.RUNNING)
    stop_reason: Mapped[str | None] = mapped_column(String(200))
    num_samples: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    driver_host: Mapped[str | None] = mapped_column(String(255))
    driver_pid: Mapped[int | None] = mapped_column(Integer)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)  # driver time over all attempts
    ray_path: Mapped[str | None] = mapped_column(Text)
    ray_job_id: Mapped[str | None] = mapped_column(String(128))  # set when `hpo launch` runs the driver
    optuna_url: Mapped[str | None] = mapped_column(Text)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(64))
    best_trial_number: Mapped[int | None] = mapped_column(Integer)
    best_metric: Mapped[float | None] = mapped_column(Float)
    best_params: Mapped[dict | None] = mapped_column(JSON)
    best_checkpoint: Mapped[str | None] = mapped_column(Text)
    best_model_uri: Mapped[str | None] = mapped_column(Text)
    trials: Mapped[list[TrialRecord]] = relationship(back_populates="study", order_by="TrialRecord.number")


class TrialRecord(Base):
    """One Optuna trial number <-> its MLflow run <-> the Ray trials that ran it (one per attempt)."""

    __tablename__ = "hpo_trials"
    __table_args__ = (UniqueConstraint("study_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("hpo_studies.id"))
    number: Mapped[int] = mapped_column(Integer)  # the Optuna trial number
    state: Mapped[TrialState] = mapped_column(_by_value(TrialState), default=TrialState.RUNNING)
    fail_reason: Mapped[str | None] = mapped_column(String(16))  # failed trials: oom | error
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    ray_trial_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    curve: Mapped[dict | None] = mapped_column(JSON)  # {"epoch": objective value}, every epoch recorded
    last_metric: Mapped[float | None] = mapped_column(Float)
    best_metric: Mapped[float | None] = mapped_column(Float)
    objectives: Mapped[dict | None] = mapped_column(JSON)  # each objective's value at best_metric's epoch (hpo.ranking)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # the latest resumable checkpoint recorded
    ray_trial_dir: Mapped[str | None] = mapped_column(Text)  # where the latest attempt writes checkpoints
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    study: Mapped[StudyRecord] = relationship(back_populates="trials")

    @property
    def values(self) -> dict[int, float]:
        """The objective per epoch, by epoch number."""
        return {int(epoch): value for epoch, value in (self.curve or {}).items()}


class ConfirmationRecord(Base):
    """One seed-only rerun of a finished trial's config (``confirm.top_k``): same params, another seed."""

    __tablename__ = "hpo_confirmations"
    __table_args__ = (UniqueConstraint("study_id", "trial_number", "seed"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("hpo_studies.id"))
    trial_number: Mapped[int] = mapped_column(Integer)  # the search trial whose config it reruns
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[TrialState] = mapped_column(_by_value(TrialState), default=TrialState.RUNNING)
    best_metric: Mapped[float | None] = mapped_column(Float)  # the objective at its best epoch
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
