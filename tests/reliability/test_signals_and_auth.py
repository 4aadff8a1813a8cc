"""One study on a real `mlflow server --app-name basic-auth` (MLflow's built-in authentication), taken through what
a first-day user meets, each step a real `hpo` process:

1. a wrong password (in the URL, then in MLFLOW_TRACKING_PASSWORD) is refused before anything is recorded: one line,
   exit 2, naming ``tracking.uri``, without the password;
2. the right password in the URL: SIGTERM at trial 0's first epoch (what Kubernetes, Slurm and ``docker stop`` send)
   stops the study as ``hpo stop`` does: exit 143, trial interrupted, MLflow run KILLED, a resume line;
3. ``hpo resume`` with the credentials in the environment instead: Ctrl-C twice (SIGINT to the driver) stops it,
   exit 130, still resumable;
4. resumed again, the tracking server is stopped for good: after ``tracking.retry_s`` the driver ends with one
   line, exit 1, the study failed and resumable;
5. the server back, ``hpo resume`` completes the study: the three stores agree, every trial run has its system
   metrics, and the password is nowhere in what hpo printed, the registry, MLflow's store or the study's files.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from hpo.states import StudyStatus, TrialState
from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, wait_for, with_overrides
from tests.helpers.servers import MlflowServer
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # one whole study, resumed three times
NAME, TRIALS, EPOCHS, PASSWORD = "guarded", 3, 3, "hpo-Pw-7391-secret"
SYSTEM_KEYS = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
               "system/trial_cpu_percentage", "system/trial_memory_megabytes"}


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path / "server", password=PASSWORD)
    s.start()
    yield s
    s.stop()


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.startswith("hpo: ")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def test_a_password_server_study_survives_sigterm_ctrl_c_and_the_server_leaving(tmp_path, sst2_dir, server, capsys):
    root, registry_url = tmp_path / "runs", f"sqlite:///{tmp_path}/runs/registry.db"
    right = server.uri_with(PASSWORD)
    args = with_overrides(TINY_SWEEP, f"study.name={NAME}", f"study.num_samples={TRIALS}", f"storage.root={root}",
                          f"trainer.max_epochs={EPOCHS}", "tracking.retry_s=10", f"tracking.uri={right}")
    printed: list[str] = []

    # 1. Wrong credentials: refused by the preflight, nothing recorded, the password not echoed.
    # Real processes throughout: "the password is nowhere in what hpo printed" must see everything a process
    # prints, libraries' own loggers included, which an in-process capture would not.
    wrong = hpo(["sweep", *with_overrides(args, f"tracking.uri={server.uri_with('not-it')}")], tmp_path, sst2_dir,
                process=True)
    line = _one_line(wrong.stderr)
    assert wrong.returncode == 2 and line.startswith("hpo: config error: tracking.uri: ") and "401" in line, line
    assert "not-it" not in wrong.stdout + wrong.stderr
    env_wrong = hpo(["sweep", *with_overrides(args, f"tracking.uri={server.uri}")], tmp_path, sst2_dir,
                    env={"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "not-it"}, process=True)
    assert env_wrong.returncode == 2 and "tracking.uri" in _one_line(env_wrong.stderr)
    printed += [wrong.stdout, wrong.stderr, env_wrong.stdout, env_wrong.stderr]
    assert not Registry.open(registry_url).list_studies(), "nothing recorded"
    assert MlflowClient(right).get_experiment_by_name(NAME) is None

    # 2. SIGTERM once trial 0 has an epoch: the graceful stop.
    driver = Driver(["sweep", *args], tmp_path, sst2_dir)
    wait_for(driver, registry_url, NAME, lambda trials: trials[0].epochs >= 1)
    driver.proc.send_signal(signal.SIGTERM)
    assert driver.wait() == 143, driver.output()[-3000:]
    printed.append(driver.output())
    assert "Traceback" not in driver.output() and "*** SIGTERM" not in driver.output()
    assert f"resume: hpo resume {NAME}" in driver.output()
    record = Registry(registry_url).require(NAME)
    assert (record.status, record.stop_reason) == (StudyStatus.STOPPED, "SIGTERM received")
    states = assert_stores_agree(registry_url, right, NAME)
    assert states["registry"][0].state == TrialState.INTERRUPTED and states["mlflow"][0].info.status == "KILLED"
    epochs_at_sigterm = states["registry"][0].epochs

    # 3. Resumed with the credentials in the environment; Ctrl-C twice.
    env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    resume = ["--storage-root", str(root), "resume", NAME]
    driver = Driver([*resume, f"tracking.uri={server.uri}"], tmp_path, sst2_dir, env=env)
    wait_for(driver, registry_url, NAME, lambda trials: trials[0].epochs > epochs_at_sigterm)
    driver.proc.send_signal(signal.SIGINT)
    driver.proc.send_signal(signal.SIGINT)
    assert driver.wait() == 130, driver.output()[-3000:]
    printed.append(driver.output())
    assert "Traceback" not in driver.output() and "KeyboardInterrupt" not in driver.output()
    record = Registry(registry_url).require(NAME)
    assert record.status == StudyStatus.STOPPED and record.stop_reason.startswith("Ctrl-C (SIGINT) received")
    assert not [t for t in Registry(registry_url).trials(NAME) if t.state == TrialState.RUNNING]

    # 4. Resumed; the tracking server leaves for good mid-trial.
    driver = Driver([*resume, f"tracking.uri={right}"], tmp_path, sst2_dir)
    done = sum(t.epochs for t in Registry(registry_url).trials(NAME))
    wait_for(driver, registry_url, NAME, lambda trials: sum(t.epochs for t in trials) > done)
    server.stop()
    assert driver.wait() == 1, driver.output()[-3000:]
    printed.append(driver.output())
    line = _one_line(driver.output())
    assert "stopped answering" in line and f"hpo resume {NAME}" in line and "Traceback" not in driver.output(), line
    record = Registry(registry_url).require(NAME)
    assert record.status == StudyStatus.FAILED and "stopped answering" in record.stop_reason

    # 5. The server is back: the study completes and the stores agree.
    server.start()
    finished = hpo([*resume, f"tracking.uri={right}"], tmp_path, sst2_dir, timeout=600, process=True)
    printed += [finished.stdout, finished.stderr]
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    s = assert_stores_agree(registry_url, right, NAME)
    assert sorted(s["registry"]) == list(range(TRIALS))
    assert {t.state for t in s["registry"].values()} == {TrialState.COMPLETED}
    client = MlflowClient(right)
    system = {n: {k: v for k, v in client.get_run(run.info.run_id).data.metrics.items() if k.startswith("system/")}
              for n, run in s["mlflow"].items()}
    for number, metrics in system.items():
        assert SYSTEM_KEYS <= set(metrics), f"trial {number}: {sorted(metrics)}"
        assert 0 < metrics["system/trial_memory_megabytes"] < 64_000
    for number, run in s["mlflow"].items():  # an epoch trained while MLflow was gone is replayed without them
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "system/trial_cpu_percentage")]
        assert len(steps) == len(set(steps)) and set(steps) <= set(range(1, EPOCHS + 1)), f"trial {number}: {steps}"

    leaks = [p for p in _files(tmp_path) if "server" not in p.relative_to(tmp_path).parts[:1]
             and PASSWORD.encode() in p.read_bytes()]
    leaks += [f"{db}:{table}" for db, table in _tables_holding(PASSWORD, root / "registry.db",
                                                               server.root / "mlflow.db")]
    leaks += [f"artifact {p}" for p in _files(server.root / "artifacts") if PASSWORD.encode() in p.read_bytes()]
    assert not leaks and not [text for text in printed if PASSWORD in text], leaks
    with capsys.disabled():
        print(f"\n[signals and auth] SIGTERM -> 143, Ctrl-C x2 -> 130, MLflow gone for good -> 1 (resumable), "
              f"resume -> {TRIALS} completed; trial 0's system metrics: {system[0]}")


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def _tables_holding(secret: str, *databases: Path) -> list[tuple[str, str]]:
    """(database, table) pairs where any text column of any row holds ``secret``."""
    found = []
    for db in databases:
        with sqlite3.connect(db) as conn:
            tables = [row[0] for row in conn.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                for row in conn.execute(f'select * from "{table}"'):  # noqa: S608 - our own test database
                    if any(isinstance(v, str | bytes) and secret in (v if isinstance(v, str) else v.decode(
                            errors="ignore")) for v in row):
                        found.append((db.name, table))
                        break
    return found
