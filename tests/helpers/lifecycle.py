"""Helpers for study-lifecycle tests: drive `hpo` subprocesses, watch the registry, kill by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import optuna
import psutil
from mlflow import MlflowClient
from sqlalchemy import inspect

from hpo.stores.registry import Registry, StudyRecord, TrialRecord
from tests.helpers.cli import run_in_process
from tests.helpers.polling import until

TINY_SWEEP = [
    "model=tiny_bert", "data.train_limit=1000", "data.validation_limit=200", "trainer.max_epochs=3",
    "study.max_concurrent=1", "scheduler=fifo", "cluster.num_cpus=2", "registry.heartbeat_s=1",
    "search.learning_rate.high=1e-3",
]


def with_overrides(base: list[str], *overrides: str) -> list[str]:
    """``base`` with each ``key=value`` in ``overrides`` replacing the same key (Hydra refuses duplicates)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(overrides)


class Driver:
    """An `hpo` subprocess (the study's driver) and every process it starts, stopped by PID."""

    def __init__(self, args: list[str], root: Path, sst2_dir: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "HPO_DATA_DIR": str(sst2_dir), "HPO_STORAGE_ROOT": str(root), **(env or {})}
        self.log = (root / f"driver-{time.time_ns()}.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "hpo", *args], cwd=root, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.family: set[int] = set()

    def remember_children(self) -> None:
        try:
            self.family |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def sigkill(self) -> None:
        """A crash: SIGKILL to the driver alone, then reap whatever it left behind."""
        self.remember_children()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reap()

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.reap()

    def reap(self) -> None:
        deadline = time.time() + 15
        alive = [pid for pid in self.family if psutil.pid_exists(pid)]
        while alive and time.time() < deadline:  # Ray's processes share the driver's fate; give them a moment
            time.sleep(0.5)
            alive = [pid for pid in alive if _running(pid)]
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()


def processes_with(pids: Iterable[int], marker: str) -> list[psutil.Process]:
    """Those of ``pids`` alive whose command line holds ``marker`` (e.g. a Ray actor's class name, which Ray writes
    into its worker's process title)."""
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if marker in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def hpo(args: list[str], root: Path, sst2_dir: Path, timeout: float = 300, env: dict[str, str] | None = None,
        stdin: str | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """``hpo ARGS`` with ``root`` as storage root and working folder: in this process (tests/helpers/cli.py), or as
    a real subprocess where ``process`` (one that runs beside another command, or whose point is the process)."""
    env = {"HPO_DATA_DIR": str(sst2_dir), "HPO_STORAGE_ROOT": str(root), **(env or {})}
    if not process:
        return run_in_process(args, root, env, stdin)
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=root, env={**os.environ, **env},
                          capture_output=True, input=stdin, text=True, timeout=timeout, check=False)


def wait_for(driver: Driver, registry_url: str, name: str, condition: Callable[[list[TrialRecord]], bool],
             timeout: float = 240) -> list[TrialRecord]:
    """Polls the registry until ``condition(trials)`` holds, noting the driver's children meanwhile."""
    registry: Registry | None = None

    def probe() -> list[TrialRecord] | None:
        nonlocal registry
        driver.remember_children()
        if driver.proc.poll() is not None:
            raise AssertionError(f"driver exited early:\n{driver.output()[-3000:]}")
        registry = registry or _registry_once_created(registry_url)
        trials = registry.trials(name) if registry else []
        return trials if trials and condition(trials) else None

    return until(probe, timeout, lambda: f"waiting on the registry:\n{driver.output()[-3000:]}", every_s=0.5)


def _registry_once_created(url: str) -> Registry | None:
    """The registry at ``url`` once the driver has created its tables (the file appears before them)."""
    if not Path(url.removeprefix("sqlite:///")).exists():
        return None
    registry = Registry(url)
    if inspect(registry.engine).has_table(StudyRecord.__tablename__):
        return registry
    registry.engine.dispose()
    return None


def study_counts(root: Path, name: str) -> dict:
    """What the three stores hold for study ``name``."""
    registry = Registry(f"sqlite:///{root}/registry.db")
    record = registry.require(name)
    study = optuna.load_study(study_name=name, storage=record.optuna_url)
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([record.mlflow_experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == record.mlflow_parent_run_id]
    return {
        "record": record,
        "registry_trials": registry.trials(name),
        "optuna_trials": study.trials,
        "mlflow_parents": [r for r in runs if r.data.tags.get("hpo.role") == "study"],
        "mlflow_children": children,
        "client": client,
    }
