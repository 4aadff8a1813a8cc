"""The study registry on SQLite and on a real PostgreSQL server, beside Optuna's own tables."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import optuna
import pytest
from sqlalchemy import create_engine, text

from hpo.registry import Registry, RegistryError, SchemaInfo, utcnow


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    return request.getfixturevalue("postgres_db")


def test_studies_and_trials_round_trip(registry_url):
    registry = Registry.open(registry_url)
    registry.create("s", "study: {}", 3, "val_accuracy", "max", optuna_url=registry_url)
    registry.upsert_trial("s", 0, state="running", params={"learning_rate": 1e-4, "batch_size": 16})
    registry.upsert_trial("s", 0, state="failed", fail_reason="oom", epochs=1, best_metric=0.5)
    registry.upsert_trial("s", 1, state="completed", epochs=3, best_metric=0.8)

    again = Registry.open(registry_url)  # a second process opening the same store
    assert [s.name for s in again.list_studies()] == ["s"]
    trials = again.trials("s")
    assert [(t.number, t.state, t.fail_reason) for t in trials] == [(0, "failed", "oom"), (1, "completed", None)]
    assert trials[0].params == {"learning_rate": 1e-4, "batch_size": 16}


def test_a_live_driver_is_refused_and_a_stale_one_taken_over(registry_url):
    registry = Registry.open(registry_url)
    registry.create("s", "{}", 1, "val_accuracy", "max")
    registry.update("s", driver_host="elsewhere", driver_pid=1, heartbeat_at=utcnow())
    with pytest.raises(RegistryError, match="being driven by pid 1 on elsewhere"):
        registry.claim("s", stale_after_s=30)
    registry.update("s", heartbeat_at=utcnow() - timedelta(seconds=31))
    registry.claim("s", stale_after_s=30)
    assert registry.require("s").driver_host != "elsewhere"


def test_registry_and_optuna_share_one_database(registry_url):
    """Optuna's tables are `studies` and `trials` too: the registry's are prefixed, so one database holds both."""
    registry = Registry.open(registry_url)
    registry.create("shared", "{}", 2, "val_accuracy", "max", optuna_url=registry_url)
    study = optuna.create_study(study_name="shared", storage=registry_url, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    registry.upsert_trial("shared", 0, state="completed", best_metric=study.trials[0].value)

    assert len(optuna.load_study(study_name="shared", storage=registry_url).trials) == 2
    assert Registry.open(registry_url).trials("shared")[0].best_metric == study.trials[0].value


def test_registry_refuses_a_newer_schema(registry_url):
    with Registry.open(registry_url).session() as s:
        s.get(SchemaInfo, 1).version = 99
    with pytest.raises(RegistryError, match="newer than this hpo"):
        Registry.open(registry_url)


OPEN_AT = """
import sys, time
from hpo.registry import Registry
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
Registry.open(sys.argv[1])
"""


def test_processes_opening_a_new_store_at_once_all_succeed(registry_url):
    """`hpo status` beside a starting driver: every process creates the tables it finds missing; one wins."""
    start = time.time() + 4  # all processes past their imports, then racing to CREATE
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, registry_url, str(start)], stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(errors)
    with Registry.open(registry_url).session() as s:
        assert s.get(SchemaInfo, 1).version == 2


def test_a_v1_registry_is_upgraded_in_place(tmp_path):
    url = f"sqlite:///{tmp_path}/registry.db"
    registry = Registry.open(url)
    registry.create("old", "{}", 1, "val_accuracy", "max")
    registry.upsert_trial("old", 0, state="completed", best_metric=0.7)
    with create_engine(url).begin() as conn:  # turn it back into the v1 layout
        conn.execute(text("ALTER TABLE hpo_trials DROP COLUMN fail_reason"))
        conn.execute(text("ALTER TABLE hpo_studies DROP COLUMN ray_job_id"))
        conn.execute(text("ALTER TABLE hpo_studies RENAME TO studies"))
        conn.execute(text("ALTER TABLE hpo_trials RENAME TO trials"))
        conn.execute(text("UPDATE hpo_schema SET version = 1"))

    upgraded = Registry.open(url)
    assert [(t.number, t.best_metric, t.fail_reason) for t in upgraded.trials("old")] == [(0, 0.7, None)]
    with upgraded.session() as s:
        assert s.get(SchemaInfo, 1).version == 2
