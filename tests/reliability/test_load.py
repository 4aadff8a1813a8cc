"""Load: one study of many trivial trials (a trainable that reports 3 epochs instantly), 8 at a time, through
the real Ray Tune, ASHA, ledger and stores, on SQLite and on PostgreSQL (registry and Optuna on the database,
MLflow on a real `mlflow server` backed by it). No storage error, every trial recorded once in every store.

16 trials per backend here (two rounds of 8 at once); throughput and the driver's memory over hundreds of trials
are bench/load.py's figures (a benchmark, not a timed test; docs/reliability.md).
"""

from __future__ import annotations

import sys

import pytest

from bench.load import instant_trial
from hpo.config.compose import build_spec, compose
from hpo.study.run import run_study
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
TRIALS = 16  # two rounds of 8 at a time


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_trivial_trials_8_at_a_time(backend, request, small_sst2, tiny_bert, local_ray, tmp_path, capfd):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[instant_trial.__module__])  # workers need not import bench/
    name = f"load_{backend}"
    stores = [f"storage.root={tmp_path}"]
    if backend == "postgresql":
        pg = request.getfixturevalue("postgres_db")
        stores += [f"registry.url={pg}", f"storage.optuna_url={pg}",
                   f"tracking.uri={request.getfixturevalue('mlflow_server_on_postgres')}"]
    spec = build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", f"study.name={name}", f"study.num_samples={TRIALS}",
        "study.max_concurrent=8", "resources.cpu=0.25", "trainer.max_epochs=3", "scheduler=asha", *stores]))
    outcome = run_study(spec, trainable=instant_trial, display="quiet")
    printed = capfd.readouterr()  # the file descriptors: what Ray's and SQLAlchemy's own loggers wrote too

    assert outcome.status == "completed", outcome.stop_reason
    assert "database is locked" not in printed.out + printed.err
    s = assert_stores_agree(spec.storage.registry_url, spec.storage.tracking_uri, name)
    assert sorted(s["registry"]) == list(range(TRIALS)), "every trial recorded once in every store"
