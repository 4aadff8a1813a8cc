"""The database restarts mid-study: the registry and the Optuna study live on a PostgreSQL server that is shut
down (fast: clients disconnected) and started again while trials run. The registry's calls in the gap are retried
on a fresh connection (the driver's heartbeat writes every second, so at least one lands in the 3 s gap, and the
driver says so when it retries); the study goes on or, if an Optuna write lands in the gap, ends resumable; either
way, after at most one `hpo resume`, nothing recorded is lost or doubled."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import SQLAlchemyError

from hpo.states import StudyStatus
from hpo.stores.registry import Registry
from tests.helpers.lifecycle import TINY_SWEEP, Driver, with_overrides
from tests.helpers.servers import fresh_database, start_postgres
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS = "db_restart", 3


@pytest.fixture
def own_postgres():
    server = start_postgres()
    yield server
    server.remove()


def test_a_database_restart_mid_study_loses_and_doubles_nothing(tmp_path, sst2_dir, own_postgres, capsys):
    pg = fresh_database(own_postgres.url, "hpo")
    args = with_overrides(TINY_SWEEP, "data.train_limit=300", "data.validation_limit=100", f"study.name={NAME}",
                          f"study.num_samples={TRIALS}",
                          f"storage.root={tmp_path}",
                          f"storage.optuna_url={pg}")
    sweep = Driver(["--registry", pg, "sweep", *args], tmp_path, sst2_dir)
    registry, deadline = Registry(pg), time.time() + 300

    def epochs() -> int:
        try:
            return sum(t.epochs for t in registry.trials(NAME))
        except SQLAlchemyError:  # the driver has not created the tables yet
            return 0

    while epochs() < 2:
        assert time.time() < deadline and sweep.proc.poll() is None, sweep.output()[-3000:]
        sweep.remember_children()
        time.sleep(0.5)
    registry.engine.dispose()
    own_postgres.stop()
    time.sleep(3)
    own_postgres.start()
    code = sweep.wait(timeout=900)
    assert "registry: its database did not answer" in sweep.output(), (
        f"no registry call was retried during the restart:\n{sweep.output()[-3000:]}")
    survived = code == 0
    if not survived:  # a write landed in the gap: the study must be resumable
        record = Registry.open(pg).require(NAME)
        assert record.status in (StudyStatus.RUNNING, StudyStatus.FAILED), record.status
        resume = Driver(["--registry", pg, "resume", NAME], tmp_path, sst2_dir)
        assert resume.wait(timeout=900) == 0, resume.output()[-3000:]
    s = assert_stores_agree(pg, f"sqlite:///{tmp_path}/mlflow.db", NAME)
    assert sorted(s["registry"]) == list(range(TRIALS)), "exactly N trials, none lost or doubled"
    assert Registry.open(pg).require(NAME).status == StudyStatus.COMPLETED
    with capsys.disabled():
        print(f"\n[database restart] PostgreSQL down 3 s mid-study: the study "
              f"{'went on' if survived else 'ended resumable and one hpo resume finished it'}; {TRIALS} trials, "
              "the three stores agree")
