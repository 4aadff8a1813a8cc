"""The study registry: which studies exist, who drives them, and each trial's record.

SQLAlchemy 2.x models over any SQLAlchemy URL (SQLite under the storage root by default, PostgreSQL for
teams). Alembic migrates the schema (``hpo/stores/migrations``): opening a store written by an older hpo upgrades
it in place, and a store newer than this hpo is refused. States are :mod:`hpo.states` enums, stored by value.

Example::

    >>> import tempfile
    >>> registry = Registry.open(f"sqlite:///{tempfile.mkdtemp()}/registry.db")
    >>> registry.create("demo", "study: {}", 4, "val_accuracy", "max")
    >>> registry.require("demo").status
    <StudyStatus.RUNNING: 'running'>
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hpo.secrets import redact_url, redacted
from hpo.states import StudyStatus, TrialState
from hpo.stores._db_retry import retrying
from hpo.stores.records import Base, ConfirmationRecord, StudyRecord, TrialRecord, utcnow

__all__ = ["Base", "ConfirmationRecord", "Registry", "RegistryError", "StudyRecord", "TrialRecord", "utcnow"]

VERSION_TABLE = "hpo_alembic_version"  # not `alembic_version`: Optuna and MLflow may share the database
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LEGACY_REVISIONS = {1: "0001_v1", 2: "0002_v2"}  # stores versioned by hpo_schema, before Alembic
_CREATE_ATTEMPTS = 3  # racing creators of one new store: the loser of each CREATE retries


class RegistryError(RuntimeError):
    """A registry operation that cannot go ahead (unknown study, live driver, newer schema)."""


def url_problem(url: str) -> str | None:
    """Why SQLAlchemy cannot use ``url`` (not a URL, an unknown database, its driver not installed), in a sentence
    with the fix and without the password; None when it can.

    >>> url_problem("sqlite:///runs/registry.db") is None
    True
    >>> url_problem("notaurl://x")
    "notaurl://x: 'notaurl' is not a database SQLAlchemy knows; use e.g. sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    """
    example = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{redacted(url)!r} is not a database URL; use e.g. {example}"
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        return f"{redacted(url)}: {parsed.drivername!r} is not a database SQLAlchemy knows; use e.g. {example}"
    except ImportError as err:
        return f"{redacted(url)}: the driver for {parsed.drivername!r} is not installed ({err}); install it"
    return None


def probe(url: str, timeout_s: float) -> None:
    """Connects to the database at ``url`` and asks it ``select 1`` (the preflight's reachability check, for every
    store hpo keeps on a database server); raises ``ConnectionError`` with the driver's first line of reason."""
    args = {"connect_timeout": int(timeout_s)} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except (SQLAlchemyError, ImportError) as err:
        raise ConnectionError(str(getattr(err, "orig", None) or err).splitlines()[0]) from None
    finally:
        engine.dispose()


class Registry:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:  # a server: a pooled connection it dropped (restart, failover) is replaced before use
            kwargs["pool_pre_ping"] = True
        self.url = url
        self.engine = create_engine(url, **kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Registry:
        """Opens the registry at ``url``, creating it or upgrading it to this hpo's schema."""
        if url.startswith("sqlite:///"):
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
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        scripts = ScriptDirectory.from_config(config)
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
            if current is None and (legacy := _legacy_version(conn)) is not None:
                command.stamp(config, _LEGACY_REVISIONS[legacy])
                current = _LEGACY_REVISIONS[legacy]
            try:
                known = current is None or scripts.get_revision(current) is not None
            except CommandError:
                known = False
            if not known:
                raise RegistryError(f"{redact_url(self.url)}: registry schema {current} is newer than this hpo "
                                    f"({scripts.get_current_head()}); upgrade hpo")
            if current != scripts.get_current_head():
                command.upgrade(config, "head")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # --- studies ---------------------------------------------------------------------------

    @staticmethod
    def _study(s: Session, name: str) -> StudyRecord:
        """The study's row inside a session; every write goes through a study that exists."""
        study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
        if study is None:
            raise RegistryError(f"no study named {name!r}")
        return study

    @retrying
    def get(self, name: str) -> StudyRecord | None:
        with self.session() as s:
            return s.scalar(select(StudyRecord).where(StudyRecord.name == name))

    def require(self, name: str) -> StudyRecord:
        study = self.get(name)
        if study is None:
            known = [st.name for st in self.list_studies()]
            raise RegistryError(f"no study named {name!r} in {redact_url(self.url)} (studies: {known or 'none'})")
        return study

    @retrying
    def list_studies(self) -> list[StudyRecord]:
        with self.session() as s:
            return list(s.scalars(select(StudyRecord).order_by(StudyRecord.created_at)))

    @retrying
    def trials(self, name: str) -> list[TrialRecord]:
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name))
            return list(study.trials) if study else []

    @retrying
    def create(self, name: str, config_yaml: str, num_samples: int, metric: str, mode: str, **fields: Any) -> None:
        with self.session() as s:
            s.add(StudyRecord(name=name, config_yaml=config_yaml, num_samples=num_samples, metric=metric,
                              mode=mode, status=StudyStatus.RUNNING, **fields))

    @retrying
    def update(self, name: str, **fields: Any) -> None:
        with self.session() as s:
            study = self._study(s, name)
            for key, value in fields.items():
                setattr(study, key, value)

    @retrying
    def request_stop(self, name: str) -> bool:
        """Asks the study's driver to stop (it reads this at its next heartbeat); False if none drives it."""
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name).with_for_update())
            if study is None or not study.status.driven:
                return False
            study.status = StudyStatus.STOPPING
            return True

    # --- one driver per study -----------------------------------------------------------------

    def driver_alive(self, study: StudyRecord, stale_after_s: float) -> bool:
        """Whether another driver still drives ``study``: fresh heartbeat and, on this host, a live pid."""
        if not study.status.driven or study.heartbeat_at is None:
            return False
        if study.driver_host == socket.gethostname() and study.driver_pid is not None:
            if study.driver_pid == os.getpid():
                return False
            if not _pid_alive(study.driver_pid):
                return False
        return utcnow() - study.heartbeat_at < timedelta(seconds=stale_after_s)

    @retrying
    def claim(self, name: str, stale_after_s: float) -> None:
        """Makes this process the study's driver, or raises if a live driver holds it."""
        with self.session() as s:
            study = s.scalar(select(StudyRecord).where(StudyRecord.name == name).with_for_update())
            if study is None:
                raise RegistryError(f"no study named {name!r}")
            if self.driver_alive(study, stale_after_s):
                raise RegistryError(
                    f"study {name!r} is being driven by pid {study.driver_pid} on {study.driver_host} "
                    f"(heartbeat {(utcnow() - (study.heartbeat_at or utcnow())).total_seconds():.0f}s ago); "
                    f"stop it with `hpo stop {name}` or wait for it to finish"
                )
            study.driver_host, study.driver_pid = socket.gethostname(), os.getpid()
            study.heartbeat_at, study.status, study.stop_reason = utcnow(), StudyStatus.RUNNING, None

    @retrying
    def heartbeat(self, name: str, elapsed_s: float) -> StudyStatus:
        """Refreshes this driver's heartbeat; returns the study status (STOPPING asks it to stop)."""
        with self.session() as s:
            study = self._study(s, name)
            study.heartbeat_at, study.elapsed_s = utcnow(), elapsed_s
            return study.status

    # --- trials ------------------------------------------------------------------------------

    @retrying
    def trial(self, name: str, number: int) -> TrialRecord | None:
        with self.session() as s:
            return s.scalar(select(TrialRecord).join(StudyRecord).where(
                StudyRecord.name == name, TrialRecord.number == number))

    def require_trial(self, name: str, number: int) -> TrialRecord:
        """Trial ``number`` of study ``name``, which the caller knows was recorded."""
        trial = self.trial(name, number)
        if trial is None:
            raise RegistryError(f"study {name!r} has no trial {number}")
        return trial

    @retrying
    def upsert_trial(self, name: str, number: int, **fields: Any) -> TrialRecord:
        with self.session() as s:
            study = self._study(s, name)
            trial = s.scalar(select(TrialRecord).where(TrialRecord.study_id == study.id, TrialRecord.number == number))
            if trial is None:
                trial = TrialRecord(study_id=study.id, number=number, params={}, epochs=0, state=TrialState.RUNNING)
                s.add(trial)
            for key, value in fields.items():
                setattr(trial, key, value)
            s.flush()
            return trial

    # --- confirmation reruns -------------------------------------------------------------------

    @retrying
    def confirmations(self, name: str) -> list[ConfirmationRecord]:
        with self.session() as s:
            return list(s.scalars(select(ConfirmationRecord).join(StudyRecord).where(StudyRecord.name == name)
                                  .order_by(ConfirmationRecord.trial_number, ConfirmationRecord.seed)))

    @retrying
    def upsert_confirmation(self, name: str, trial_number: int, seed: int, **fields: Any) -> ConfirmationRecord:
        with self.session() as s:
            study = self._study(s, name)
            rerun = s.scalar(select(ConfirmationRecord).where(
                ConfirmationRecord.study_id == study.id, ConfirmationRecord.trial_number == trial_number,
                ConfirmationRecord.seed == seed))
            if rerun is None:
                rerun = ConfirmationRecord(study_id=study.id, trial_number=trial_number, seed=seed, epochs=0,
                                           state=TrialState.RUNNING)
                s.add(rerun)
            for key, value in fields.items():
                setattr(rerun, key, value)
            s.flush()
            return rerun


def _legacy_version(conn) -> int | None:
    """The ``hpo_schema`` version of a store written before Alembic managed it (v1, v2), else None."""
    if not inspect(conn).has_table("hpo_schema"):
        return None
    return conn.scalar(text("SELECT version FROM hpo_schema WHERE id = 1"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
