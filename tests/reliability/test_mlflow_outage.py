"""The MLflow server goes away mid-study: stopped for 10 s once trial 0 has an epoch, then started again on the
same port and store. The study goes on (MLflow's client retries with backoff while the ledger waits), and at the end
MLflow holds every trial's params, every epoch's metrics and every trial's checkpoint artifact, each once."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from tests.helpers.lifecycle import TINY_SWEEP, Driver, wait_for, with_overrides
from tests.helpers.servers import MlflowServer
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS, OUTAGE_S = "mlflow_outage", 2, 10


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path)
    s.start()
    yield s
    s.stop()


def test_a_10_second_mlflow_outage_loses_nothing(tmp_path, sst2_dir, server, capsys):
    url = f"sqlite:///{tmp_path}/registry.db"
    args = with_overrides(TINY_SWEEP, "data.train_limit=500", f"study.name={NAME}", f"study.num_samples={TRIALS}",
                          f"storage.root={tmp_path}",
                          f"tracking.uri={server.uri}")
    driver = Driver(["sweep", *args], tmp_path, sst2_dir)
    wait_for(driver, url, NAME, lambda trials: trials[0].epochs >= 1)
    server.stop()
    time.sleep(OUTAGE_S)
    server.start()
    assert driver.wait(timeout=900) == 0, driver.output()[-3000:]

    s = assert_stores_agree(url, server.uri, NAME)  # every epoch of every trial, once, in MLflow too
    assert sorted(s["mlflow"]) == list(range(TRIALS))
    client = MlflowClient(server.uri)
    for number, run in s["mlflow"].items():
        assert {"learning_rate", "batch_size", "freeze_depth"} <= set(run.data.params), number
        assert client.list_artifacts(run.info.run_id, "checkpoint"), f"trial {number}'s checkpoint"
    with capsys.disabled():
        epochs = sum(t.epochs for t in s["registry"].values())
        print(f"\n[mlflow outage] server down {OUTAGE_S} s after trial 0 epoch 1; the study went on: {TRIALS} trials, "
              f"{epochs} epochs, each in MLflow once, {TRIALS} checkpoint artifacts")
