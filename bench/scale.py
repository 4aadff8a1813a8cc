"""One driver for a big cluster, simulated: 64 logical GPUs, up to 1,000 trials that sleep instead of training.

A local Ray head advertising 64 GPUs (and 64 CPUs) runs studies of 100, 300 and 1,000 trials, 64 at once, each
trial one GPU: a trainer that sleeps ``--epoch-s`` per epoch and reports 3 epochs with a value drawn from its
params, so ASHA prunes as it would; MLflow and the registry on (SQLite, as the default study), no checkpoints.
For each size it measures, on the driver: CPU seconds (user + system) and peak memory, trials started per
second, MLflow, registry and Optuna calls per second with their latency (median, p99). From them: CPU seconds
per trial at each size (the goal: flat, i.e. cost linear in trials) and how many GPUs one driver keeps busy
with 60-second trials (Little's law: the trials it can start per second x 60 s).

    python -m bench.scale [--sizes 100 300 1000] [--epoch-s 1.0] [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.common import RESULTS, MethodTimer, data_file, write

GPUS = 64


def sleeping_trainable(epoch_s: float, metric: str):
    """A trial that sleeps ``epoch_s`` per epoch and reports a value that rises with epochs and depends on the
    learning rate (so ASHA has something to rank). Pickled by value: workers need not import bench."""
    import ray.cloudpickle
    from ray import tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def sleeping_trial(config, *, data, trainer, checkpoints, **_) -> None:  # task=, models=: unused
        import math

        quality = 0.9 - 0.1 * abs(math.log10(config["learning_rate"]) + 4)
        for epoch in range(1, trainer.max_epochs + 1):
            time.sleep(epoch_s)
            tune.report({"epoch": epoch, metric: quality - 0.1 / epoch})

    return sleeping_trial


class PeakMemory:
    """The driver's peak resident memory, sampled every 0.2 s while a study runs."""

    def __init__(self) -> None:
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.2)


def run_size(trials: int, epoch_s: float, root: Path, timer: MethodTimer) -> dict:
    from hpo import Registry, build_spec, compose, run_study

    spec = build_spec(compose([
        "experiment=sst2_minilm", f"study.name=scale_{trials}", f"study.num_samples={trials}",
        f"study.max_concurrent={GPUS}", "resources.gpu=1", "resources.cpu=1", "tracking.register_best=false",
        "data.train_limit=200", "data.validation_limit=100", f"data.train_path={data_file('train')}",
        f"data.validation_path={data_file('dev')}", f"storage.root={root}", "resources.max_retries=0"]))
    process = psutil.Process()
    before_calls, before_s = dict(timer.calls), dict(timer.seconds)
    for latencies in timer.latencies.values():
        latencies.clear()
    cpu = process.cpu_times()
    started = time.perf_counter()
    with PeakMemory() as memory:
        outcome = run_study(spec, trainable=sleeping_trainable(epoch_s, spec.objective.metric), display="quiet")
    wall = time.perf_counter() - started
    after = process.cpu_times()
    records = Registry.open(spec.storage.registry_url).trials(spec.name)
    epochs = sum(r.epochs for r in records)
    row = {"trials": trials, "status": outcome.status, "wall_s": wall, "epochs": epochs,
           "driver_cpu_s": (after.user - cpu.user) + (after.system - cpu.system),
           "driver_peak_rss_mb": memory.peak / 1e6, "trials_started_per_s": len(records) / wall,
           "gpu_busy_fraction": epochs * epoch_s / (wall * GPUS)}
    row["driver_cpu_s_per_trial"] = row["driver_cpu_s"] / trials
    for label in ("mlflow", "registry", "optuna"):
        calls = timer.calls[label] - before_calls.get(label, 0)
        latencies = sorted(timer.latencies[label])
        row[label] = {"calls": calls, "calls_per_s": calls / wall,
                      "seconds": timer.seconds[label] - before_s.get(label, 0.0),
                      "median_ms": 1000 * statistics.median(latencies) if latencies else None,
                      "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--epoch-s", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()

    import mlflow
    import optuna
    import ray

    from hpo import Registry

    timer = MethodTimer()
    timer.wrap(mlflow.MlflowClient, "mlflow")  # every MLflow call the driver makes, whichever module makes it
    timer.wrap(Registry, "registry")
    timer.wrap(optuna.Study, "optuna", only=("ask", "tell"))
    ray.init(address="local", num_cpus=GPUS, num_gpus=GPUS, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpo-bench-scale-") as tmp:
        for size in args.sizes:
            row = run_size(size, args.epoch_s, Path(tmp), timer)
            rows.append(row)
            print(f"{size} trials: {row['wall_s']:.0f} s, driver CPU {row['driver_cpu_s']:.1f} s "
                  f"({row['driver_cpu_s_per_trial'] * 1000:.0f} ms/trial), "
                  f"peak RSS {row['driver_peak_rss_mb']:.0f} MB, "
                  f"{row['trials_started_per_s']:.2f} trials/s, GPUs busy {row['gpu_busy_fraction']:.1%}; "
                  + "; ".join(f"{k} {row[k]['calls_per_s']:.1f}/s median {row[k]['median_ms'] or 0:.1f} ms "
                              f"p99 {row[k]['p99_ms'] or 0:.1f} ms" for k in ("mlflow", "registry", "optuna")),
                  flush=True)
    ray.shutdown()
    growth = rows[-1]["driver_cpu_s_per_trial"] / rows[0]["driver_cpu_s_per_trial"]
    rate = rows[-1]["trials_started_per_s"]
    bound = 60 / rows[-1]["driver_cpu_s_per_trial"]
    print(f"driver CPU per trial, {rows[-1]['trials']} vs {rows[0]['trials']} trials: {growth:.2f}x (goal <= ~1: "
          f"linear); one driver starts {rate:.2f} trials/s here -> keeps {rate * 60:.0f} GPUs busy with 60-second "
          f"trials; {bound:.0f} if its CPU per trial were the only limit (a core of its own)")
    write({"benchmark": "scale", "gpus": GPUS, "epoch_s": args.epoch_s, "sizes": rows,
           "cpu_per_trial_growth": growth, "gpus_kept_busy_60s_trials": rate * 60,
           "gpus_kept_busy_60s_trials_driver_bound": bound,
           "goals_missed": [] if growth <= 1.25 else ["driver cost grows faster than linearly"]}, args.out)


if __name__ == "__main__":
    main()
