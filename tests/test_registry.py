"""The study registry on SQLite (fast) and on a real PostgreSQL server, beside Optuna's own tables; its
schema migrated by Alembic, from a store the previous release (schema v2) wrote."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect, text

from hpo.states import StudyStatus, TrialState
from hpo.stores.registry import VERSION_TABLE, Registry, RegistryError, utcnow

HEAD = "0006_v6"
V2_STORE = Path(__file__).parent / "fixtures" / "registry_v2.db"  # written by hpo 0.1.0's Registry (schema v2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def registry_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    return request.getfixturevalue("postgres_db")


def test_studies_and_trials_round_trip_as_enums(registry_url):
    registry = Registry.open(registry_url)
    registry.create("s", "study: {}", 3, "val_accuracy", "max", optuna_url=registry_url)
    registry.upsert_trial("s", 0, state=TrialState.RUNNING, params={"learning_rate": 1e-4, "batch_size": 16})
    registry.upsert_trial("s", 0, state=TrialState.FAILED, fail_reason="oom", epochs=1, best_metric=0.5)
    registry.upsert_trial("s", 1, state=TrialState.COMPLETED, epochs=3, curve={"1": 0.7, "2": 0.8, "3": 0.75})

    again = Registry.open(registry_url)  # a second process opening the same store
    assert [s.name for s in again.list_studies()] == ["s"]
    assert again.require("s").status is StudyStatus.RUNNING
    trials = again.trials("s")
    assert [(t.number, t.state, t.fail_reason) for t in trials] == [
        (0, TrialState.FAILED, "oom"), (1, TrialState.COMPLETED, None)]
    assert all(type(t.state) is TrialState for t in trials)
    assert trials[0].params == {"learning_rate": 1e-4, "batch_size": 16}
    assert trials[1].values == {1: 0.7, 2: 0.8, 3: 0.75}


def test_a_live_driver_is_refused_and_a_stale_one_taken_over(registry_url):
    registry = Registry.open(registry_url)
    registry.create("s", "{}", 1, "val_accuracy", "max")
    registry.update("s", driver_host="elsewhere", driver_pid=1, heartbeat_at=utcnow())
    with pytest.raises(RegistryError, match="being driven by pid 1 on elsewhere"):
        registry.claim("s", stale_after_s=30)
    registry.update("s", heartbeat_at=utcnow() - timedelta(seconds=31))
    registry.claim("s", stale_after_s=30)
    assert registry.require("s").driver_host != "elsewhere"


def test_a_stop_request_reaches_only_a_driven_study(registry_url):
    registry = Registry.open(registry_url)
    registry.create("s", "{}", 1, "val_accuracy", "max")
    assert registry.request_stop("s") and registry.require("s").status is StudyStatus.STOPPING
    assert registry.heartbeat("s", 1.0) is StudyStatus.STOPPING
    registry.update("s", status=StudyStatus.COMPLETED)
    assert not registry.request_stop("s") and registry.require("s").status is StudyStatus.COMPLETED


def test_registry_and_optuna_share_one_database(registry_url):
    """Optuna's tables are `studies` and `trials` too: the registry's are prefixed, so one database holds both."""
    registry = Registry.open(registry_url)
    registry.create("shared", "{}", 2, "val_accuracy", "max", optuna_url=registry_url)
    study = optuna.create_study(study_name="shared", storage=registry_url, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    registry.upsert_trial("shared", 0, state=TrialState.COMPLETED, best_metric=study.trials[0].value)

    assert len(optuna.load_study(study_name="shared", storage=registry_url).trials) == 2
    again = Registry.open(registry_url)
    assert again.trials("shared")[0].best_metric == study.trials[0].value
    assert again.schema_revision() == HEAD


def test_registry_refuses_a_newer_schema(registry_url):
    registry = Registry.open(registry_url)
    with registry.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    with pytest.raises(RegistryError, match="0099_from_the_future is newer than this hpo"):
        Registry.open(registry_url)


OPEN_AT_GO = """
import sys
from hpo.stores.registry import Registry
print("ready", flush=True)  # past its imports
sys.stdin.readline()  # the barrier: every process is released at once
Registry.open(sys.argv[1])
"""


@pytest.mark.integration
def test_processes_opening_a_new_store_at_once_all_succeed(registry_url):
    """`hpo status` beside a starting driver: every process creates the tables it finds missing; one wins. A barrier
    (each says "ready" and waits for "go" on its stdin) lines them up however loaded the machine is."""
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_GO, registry_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(errors)
    assert Registry.open(registry_url).schema_revision() == HEAD


def test_a_v2_registry_from_the_previous_release_is_upgraded_in_place(tmp_path):
    store = tmp_path / "registry.db"
    shutil.copy(V2_STORE, store)
    url = f"sqlite:///{store}"

    upgraded = Registry.open(url)
    assert upgraded.schema_revision() == HEAD
    assert not inspect(upgraded.engine).has_table("hpo_schema"), "Alembic's version table replaces v2's"
    trials = upgraded.trials("sst2_v2")
    assert [(t.number, t.state, t.fail_reason, t.best_metric, t.curve) for t in trials] == [
        (0, TrialState.PRUNED, None, 0.7, None), (1, TrialState.COMPLETED, None, 0.81, None),
        (2, TrialState.FAILED, "oom", None, None)]
    record = upgraded.require("sst2_v2")
    assert (record.status, record.best_params, record.elapsed_s) == (
        StudyStatus.COMPLETED, {"learning_rate": 1e-4, "batch_size": 32}, 120.5)
    assert upgraded.require("stopped_v2").status is StudyStatus.STOPPED
    assert upgraded.trials("stopped_v2")[0].state is TrialState.INTERRUPTED

    upgraded.upsert_trial("sst2_v2", 1, curve={"1": 0.78, "2": 0.81, "3": 0.8})  # the new column works
    assert Registry.open(url).trials("sst2_v2")[1].values == {1: 0.78, 2: 0.81, 3: 0.8}


def test_a_v1_registry_is_upgraded_in_place(tmp_path):
    store = tmp_path / "registry.db"
    shutil.copy(V2_STORE, store)
    with create_engine(f"sqlite:///{store}").begin() as conn:  # turn it back into the v1 layout
        conn.execute(text("ALTER TABLE hpo_trials DROP COLUMN fail_reason"))
        conn.execute(text("ALTER TABLE hpo_studies DROP COLUMN ray_job_id"))
        conn.execute(text("ALTER TABLE hpo_studies RENAME TO studies"))
        conn.execute(text("ALTER TABLE hpo_trials RENAME TO trials"))
        conn.execute(text("UPDATE hpo_schema SET version = 1"))

    upgraded = Registry.open(f"sqlite:///{store}")
    assert [(t.number, t.best_metric, t.fail_reason) for t in upgraded.trials("sst2_v2")] == [
        (0, 0.7, None), (1, 0.81, None), (2, None, None)]
    assert upgraded.schema_revision() == HEAD
