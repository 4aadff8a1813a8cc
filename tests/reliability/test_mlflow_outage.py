"""The MLflow server goes away mid-study: stopped for 10 s, then started again on the same port and store.
The outage starts once the driver has printed an epoch (its ledger has written it to every store and waits for the
next event), so the next event's registry write, which comes before its MLflow write, lands in the outage: the
registry records something while MLflow is down, and that MLflow write must wait the outage out (MLflow's client
retries with backoff while the ledger waits). The study goes on, and at the end MLflow holds every trial's params,
every epoch's metrics (what was recorded during the outage among them) and every trial's checkpoint artifact, each
once."""

from __future__ import annotations

import re
import time

import pytest
from mlflow import MlflowClient

from hpo.stores.registry import Registry
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
    wait_for(driver, url, NAME, lambda _: re.search(r"\] trial \d+ epoch \d+: ", driver.output()))
    server.stop()
    down_at = _snapshot(url)
    time.sleep(OUTAGE_S)
    during = _snapshot(url)
    server.start()
    assert during - down_at, f"the registry recorded nothing while MLflow was down: {sorted(down_at)}"
    assert driver.wait(timeout=900) == 0, driver.output()[-3000:]

    s = assert_stores_agree(url, server.uri, NAME)  # every epoch of every trial, once, in MLflow too
    assert sorted(s["mlflow"]) == list(range(TRIALS))
    client = MlflowClient(server.uri)
    for number, _, epoch in during - down_at:  # recorded while MLflow was down: in MLflow afterwards, once
        if epoch:
            steps = [m.step for m in client.get_metric_history(s["mlflow"][number].info.run_id, "val_accuracy")]
            assert steps.count(epoch) == 1, f"trial {number} epoch {epoch}, recorded during the outage: {steps}"
    for number, run in s["mlflow"].items():
        assert {"learning_rate", "batch_size", "freeze_depth"} <= set(run.data.params), number
        assert client.list_artifacts(run.info.run_id, "checkpoint"), f"trial {number}'s checkpoint"
    with capsys.disabled():
        epochs = sum(t.epochs for t in s["registry"].values())
        print(f"\n[mlflow outage] server down {OUTAGE_S} s ({len(during - down_at)} registry change(s) meanwhile); "
              f"the study went on: {TRIALS} trials, "
              f"{epochs} epochs, each in MLflow once, {TRIALS} checkpoint artifacts")


def _snapshot(registry_url: str) -> set[tuple[int, str, int]]:
    """Every trial's (number, state, epochs) in the registry now."""
    return {(t.number, str(t.state), t.epochs) for t in Registry(registry_url).trials(NAME)}
