"""Load: one study of many trivial trials (a trainable that reports 3 epochs instantly), 8 at a time, through
the real Ray Tune, ASHA, ledger and stores, on SQLite and on PostgreSQL (registry and Optuna on the database,
MLflow on a real `mlflow server` backed by it). No storage error, every trial recorded once in every store, the
driver's memory flat; trials per second reported.

CI runs 30 trials per backend; `HPO_LOAD_TRIALS=500` is the full variant (figures in docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from datetime import timezone

import psutil
import pytest

from hpo.config.compose import build_spec, compose
from hpo.stores.registry import Registry
from hpo.study.run import run_study
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
TRIALS = int(os.environ.get("HPO_LOAD_TRIALS", "30"))


def instant_trial(config, *, data, trainer, checkpoints, **_) -> None:  # task=: unused
    """Three epochs reported at once, values seeded by the sampled learning rate (no model, no checkpoint)."""
    from ray import tune

    rng = random.Random(config["learning_rate"])
    value = rng.uniform(0.5, 0.8)
    for epoch in range(1, trainer.max_epochs + 1):
        value += rng.uniform(0.0, 0.05)
        tune.report({"epoch": epoch, "val_accuracy": value, "val_loss": 1 - value})


class MemorySampler(threading.Thread):
    """The driver's resident memory, sampled every 0.2 s while the study runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.is_set():
            self.samples.append((time.time(), me.memory_info().rss))
            time.sleep(0.2)

    def mean_mb(self, start: float, end: float) -> float:
        window = [rss for t, rss in self.samples if start <= t <= end] or [self.samples[-1][1]]
        return sum(window) / len(window) / 2**20


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_trivial_trials_8_at_a_time(backend, request, small_sst2, tiny_bert, local_ray, tmp_path, capsys):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
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
    sampler = MemorySampler()
    sampler.start()
    started = time.time()
    try:
        outcome = run_study(spec, trainable=instant_trial, display="quiet")
    finally:
        sampler.done.set()
        sampler.join()
    wall = time.time() - started
    printed = capsys.readouterr()

    assert outcome.status == "completed", outcome.stop_reason
    assert "database is locked" not in printed.out + printed.err
    s = assert_stores_agree(spec.storage.registry_url, spec.storage.tracking_uri, name)
    assert sorted(s["registry"]) == list(range(TRIALS)), "every trial recorded once in every store"
    finished = sorted(t.updated_at.replace(tzinfo=timezone.utc).timestamp()  # the registry keeps naive UTC
                      for t in Registry.open(spec.storage.registry_url).trials(name))
    tenth = max(1, TRIALS // 5)
    first = sampler.mean_mb(started, finished[tenth - 1])
    last = sampler.mean_mb(finished[-tenth], time.time())
    with capsys.disabled():
        print(f"\n[load {backend}] {TRIALS} trials, 8 at a time: {wall:.1f} s, {TRIALS / wall:.2f} trials/s; driver "
              f"RSS {first:.0f} MB over the first {tenth} trials, {last:.0f} MB over the last {tenth} "
              f"({last - first:+.0f} MB)")
    assert last - first < 150, "the driver's memory grows with trials"
