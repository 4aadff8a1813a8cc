"""Load: how many trials per second the orchestration carries and whether the driver's memory grows with trials.

One study of trivial trials (:func:`instant_trial`: three epochs reported at once, no model, no checkpoint), 8 at
a time (0.25 CPU each), through the real Ray Tune, ASHA, ledger and stores, on SQLite (registry, Optuna and MLflow)
or on PostgreSQL (``--postgres URL``: registry and Optuna on it, ``--tracking-uri`` a `mlflow server` backed by it).
The driver's resident memory is sampled every 0.2 s; the baseline is its mean over the first ``--window`` trials,
compared with the mean over the last ``--window`` (a ratio and MB): a leak of a few hundred KB per trial shows as
tens of MB over 500 trials. tests/reliability/test_load.py checks correctness under load (30 trials, both
backends); the figures come from here.

    python -m bench.load [--trials 500] [--window 100] [--out bench/results/load-sqlite.json]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from datetime import timezone
from pathlib import Path

import psutil
import ray.cloudpickle

from bench.common import write
from hpo.config.compose import build_spec, compose
from hpo.env import set_defaults
from hpo.stores.registry import Registry
from hpo.study.run import run_study
from trainers.tiny import build_tiny_bert


def instant_trial(config, *, data, trainer, checkpoints, **_) -> None:  # task=: unused
    """Three epochs reported at once, values seeded by the sampled learning rate (no model, no checkpoint)."""
    from ray import tune

    rng = random.Random(config["learning_rate"])
    value = rng.uniform(0.5, 0.8)
    for epoch in range(1, trainer.max_epochs + 1):
        value += rng.uniform(0.0, 0.05)
        tune.report({"epoch": epoch, "val_accuracy": value, "val_loss": 1 - value})


class MemorySampler(threading.Thread):
    """This process's resident memory, sampled every 0.2 s while the study runs."""

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


def load_spec(name: str, root: Path, model: Path, trials: int, stores: list[str]):
    """The load study: ``trials`` instant trials, 8 at a time, ASHA, on the stores ``stores`` name."""
    return build_spec(compose([
        "model=hf", f"model.name_or_path={model}", "data=sst2", "data.train_limit=100", "data.validation_limit=50",
        f"study.name={name}", f"study.num_samples={trials}", "study.max_concurrent=8", "resources.cpu=0.25",
        "trainer.max_epochs=3", "scheduler=asha", f"storage.root={root}", *stores]))


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--trials", type=int, default=500)
    cli.add_argument("--window", type=int, default=100, help="trials in the first and last memory windows")
    cli.add_argument("--postgres", help="a PostgreSQL URL for the registry and Optuna (default: SQLite)")
    cli.add_argument("--tracking-uri", help="with --postgres: a `mlflow server` backed by it")
    cli.add_argument("--out", type=Path)
    args = cli.parse_args()
    set_defaults()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import bench/
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    root = Path(tempfile.mkdtemp(prefix="hpo-load-"))
    stores = [f"registry.url={args.postgres}", f"storage.optuna_url={args.postgres}",
              f"tracking.uri={args.tracking_uri}"] if args.postgres else []
    spec = load_spec("load", root, build_tiny_bert(root / "tiny_bert"), args.trials, stores)
    sampler = MemorySampler()
    sampler.start()
    started = time.time()
    try:
        outcome = run_study(spec, trainable=instant_trial, display="quiet")
    finally:
        sampler.done.set()
        sampler.join()
    wall = time.time() - started
    finished = sorted(t.updated_at.replace(tzinfo=timezone.utc).timestamp()  # the registry keeps naive UTC
                      for t in Registry.open(spec.storage.registry_url).trials(spec.name))
    window = min(args.window, max(1, len(finished) // 5))
    first = sampler.mean_mb(started, finished[window - 1])
    last = sampler.mean_mb(finished[-window], time.time())
    result = {"backend": "postgresql" if args.postgres else "sqlite", "trials": args.trials, "status": outcome.status,
              "wall_s": round(wall, 1), "trials_per_s": round(args.trials / wall, 2), "window": window,
              "rss_first_mb": round(first), "rss_last_mb": round(last), "rss_growth_mb": round(last - first),
              "rss_last_over_first": round(last / first, 3)}
    print(f"{args.trials} trials, 8 at a time: {wall:.1f} s, {result['trials_per_s']} trials/s; driver RSS "
          f"{first:.0f} MB over the first {window} trials, {last:.0f} MB over the last {window} "
          f"(x{result['rss_last_over_first']}, {last - first:+.0f} MB)")
    write(result, args.out)
    ray.shutdown()


if __name__ == "__main__":
    main()
