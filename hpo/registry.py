"""The study registry: which studies exist, who drives them, and each trial's bookkeeping.

SQLAlchemy 2.x declarative models over any SQLAlchemy URL (SQLite under the storage root by
default, PostgreSQL for teams). The schema carries a version number: a newer ``hpo`` upgrades an
older store in place and refuses a store newer than itself.

Example::

    registry = Registry.open("sqlite:///runs/registry.db")
    for study in registry.list_studies():
        print(study.name, study.status)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

# v2: tables prefixed hpo_ (Optuna's own are `studies`, `trials`); trials.fail_reason; studies.ray_job_id
SCHEMA_VERSION = 2
_CREATE_ATTEMPTS = 3  # racing creators of one new store: the loser of each CREATE retries
STUDY_STATUSES = ("running", "stopping", "stopped", "completed", "failed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    __tablename__ = "hpo_schema"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class StudyRecord(Base):
    __tablename__ = "hpo_studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    config_yaml: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
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
    state: Mapped[str] = mapped_column(String(16), default="running")  # running|completed|pruned|failed
    fail_reason: Mapped[str | None] = mapped_column(String(16))  # failed trials: oom | error
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    ray_trial_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    last_metric: Mapped[float | None] = mapped_column(Float)
    best_metric: Mapped[float | None] = mapped_column(Float)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # the latest resumable checkpoint recorded
    ray_trial_dir: Mapped[str | None] = mapped_column(Text)  # where the latest attempt writes checkpoints
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    study: Mapped[StudyRecord] = relationship(back_populates="trials")


class RegistryError(RuntimeError):
    """A registry operation that cannot go ahead (unknown study, live driver, newer schema)."""


class Registry:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        self.url = url
        self.engine = create_engine(url, **kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Registry:
        """Opens (creating or upgrading) the registry at ``url``."""
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        registry = cls(url)
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                registry._migrate()
                break
            except DatabaseError:
                # Two processes opening a new store at once (`hpo status` beside a starting driver) both see
                # no table; the one that loses the CREATE fails, and on the next pass finds the tables made.
                if attempt == _CREATE_ATTEMPTS:
                    raise
        return registry

    def _migrate(self) -> None:
        """Upgrades an older store in place, one step per version, then creates what is missing."""
        with self.engine.begin() as conn:
            version = None
            if inspect(conn).has_table(SchemaInfo.__tablename__):
                version = conn.scalar(select(SchemaInfo.version).where(SchemaInfo.id == 1))
            if version is not None and version > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.url}: registry schema v{version} is newer than this hpo (v{SCHEMA_VERSION}); upgrade hpo"
                )
            if version == 1:  # v1 -> v2: out of the way of Optuna's tables when both share one database
                conn.execute(text("ALTER TABLE studies RENAME TO hpo_studies"))
                conn.execute(text("ALTER TABLE trials RENAME TO hpo_trials"))
                conn.execute(text("ALTER TABLE hpo_trials ADD COLUMN fail_reason VARCHAR(16)"))
                conn.execute(text("ALTER TABLE hpo_studies ADD COLUMN ray_job_id VARCHAR(128)"))
                conn.execute(update(SchemaInfo.__table__).where(SchemaInfo.id == 1).values(version=2))
        Base.metadata.create_all(self.engine)
        with self.session() as s:
            if s.get(SchemaInfo, 1) is None:
                s.add(SchemaInfo(id=1, version=SCHEMA_VERSION))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # --- studies ---------------------------------------------------------------------------

    def get(self, name: str) -> StudyRecord | None:
        with self.session() as s:
            return s.scalar(select(StudyRecord).where(StudyRecord.name == name))

    def require(self, name: str) -> StudyRecord:
        study = self.get(name)
        if study is None:
            known = [st.name for st in self.list_studies()]
            raise RegistryError(f"no study named {name!r} in {self.url} (studies: {known or 'none'})")
        return study

    def list_studies(self) -> list[StudyRecord]:
        with self.session() as s:
            return list(s.scalars(select(StudyRecord).order_by(StudyRecord.created_at)))

    def trials(self, name: str) -> list[TrialRecord]:
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
            return list(study.trials) if study else []

    def create(self, name: str, config_yaml: str, num_samples: int, metric: str, mode: str, **fields) -> None:
        with self.session() as s:
            s.add(StudyRecord(name=name, config_yaml=config_yaml, num_samples=num_samples, metric=metric,
                              mode=mode, status="running", **fields))

    def update(self, name: str, **fields) -> None:
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
            for key, value in fields.items():
                setattr(study, key, value)

    # --- one driver per study -----------------------------------------------------------------

    def driver_alive(self, study: StudyRecord, stale_after_s: float) -> bool:
        """Whether another driver still drives ``study``: fresh heartbeat and, on this host, a live pid."""
        if study.status not in ("running", "stopping") or study.heartbeat_at is None:
            return False
        if study.driver_host == socket.gethostname() and study.driver_pid is not None:
            if study.driver_pid == os.getpid():
                return False
            if not _pid_alive(study.driver_pid):
                return False
        return utcnow() - study.heartbeat_at < timedelta(seconds=stale_after_s)

    def claim(self, name: str, stale_after_s: float) -> None:
        """Makes this process the study's driver, or raises if a live driver holds it."""
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name).with_for_update())
            if study is None:
                raise RegistryError(f"no study named {name!r}")
            if self.driver_alive(study, stale_after_s):
                raise RegistryError(
                    f"study {name!r} is being driven by pid {study.driver_pid} on {study.driver_host} "
                    f"(heartbeat {(utcnow() - study.heartbeat_at).total_seconds():.0f}s ago); "
                    f"stop it with `hpo stop {name}` or wait for it to finish"
                )
            study.driver_host, study.driver_pid = socket.gethostname(), os.getpid()
            study.heartbeat_at, study.status, study.stop_reason = utcnow(), "running", None

    def heartbeat(self, name: str, elapsed_s: float) -> str:
        """Refreshes this driver's heartbeat; returns the study status (``stopping`` asks it to stop)."""
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
            study.heartbeat_at, study.elapsed_s = utcnow(), elapsed_s
            return study.status

    # --- trials ------------------------------------------------------------------------------

    def trial(self, name: str, number: int) -> TrialRecord | None:
        with self.session() as s:
            return s.scalar(select(TrialRecord).join(StudyRecord).where(
                StudyRecord.name == name, TrialRecord.number == number))

    def upsert_trial(self, name: str, number: int, **fields) -> None:
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
            trial = s.scalar(select(TrialRecord).where(TrialRecord.study_id == study.id, TrialRecord.number == number))
            if trial is None:
                trial = TrialRecord(study_id=study.id, number=number)
                s.add(trial)
            for key, value in fields.items():
                setattr(trial, key, value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
