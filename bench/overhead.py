"""What hpo costs beyond the training it runs: fixed cost per trial, where it goes, time to the first step.

The same grid of trial configs (tiny BERT, real SST-2 rows, 1 and 5 epochs) is run, each in a fresh process:
  (a) ``bare``: a Python loop calling ``trainers.fine_tune`` for each config, one process, nothing else;
  (b) ``study``: an hpo study (grid sampler, FIFO, one trial at a time, Ray, Optuna, the registry and MLflow on).
Each is run at two sizes (``--trials`` small and large); the fixed cost per trial is the difference of the
slopes (study seconds per extra trial minus bare seconds per extra trial) and the one-time cost the rest.
The large study is instrumented (from the bench, nothing in hpo changes): seconds in MLflow writes, registry
writes and Optuna calls on the driver, in handing each checkpoint to Ray in the trial, and the phases up to
the first trial's first training step (imports, Ray start, study setup, trial start).

    python -m bench.overhead [--trials 3 9] [--epochs 1 5] [--out bench/results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import REPO, RESULTS, MethodTimer, data_file, write

STARTED = psutil.Process().create_time()  # this process's start: what a user waits from `hpo sweep`
PROBE_ENV = "HPO_BENCH_PROBE"  # a JSONL file the trial's probe appends to
ROWS, VALIDATION_ROWS = 2000, 200
LEARNING_RATES = [1e-4, 2e-4, 3e-4, 5e-4, 7e-4, 1e-3, 2e-3, 3e-3, 5e-3]


def _emit(kind: str, **fields) -> None:
    with open(os.environ[PROBE_ENV], "a") as f:
        f.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")


def probe_first_step() -> None:
    """Notes the first training step of this process (patches ``trainers.loop`` here only: a benchmark's probe)."""
    from trainers import loop

    step = loop._train_step

    def first_step(*args, **kwargs):
        if not getattr(first_step, "seen", False):
            first_step.seen = True
            _emit("first_step")
        return step(*args, **kwargs)

    loop._train_step = first_step


def install_trial_probe() -> None:
    """Ray's worker setup hook: times, inside each trial, the first training step, ``fine_tune`` and each
    checkpoint hand-off to Ray (patches module attributes of this worker process only). The one place bench/
    reaches past hpo's public API: it instruments the trial function's own internals."""
    from hpo.study import trial

    probe_first_step()
    fine_tune, report = trial.fine_tune, trial.RayReporter.report

    def timed_fine_tune(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fine_tune(*args, **kwargs)
        finally:
            _emit("fine_tune", seconds=time.perf_counter() - started)

    def timed_report(self, metrics, checkpoint_dir):
        started = time.perf_counter()
        report(self, metrics, checkpoint_dir)
        _emit("checkpoint_handoff", seconds=time.perf_counter() - started)

    trial.fine_tune, trial.RayReporter.report = timed_fine_tune, timed_report


def _overrides(root: Path, trials: int, epochs: int) -> list[str]:
    rates = ",".join(str(r) for r in LEARNING_RATES[:trials])
    return ["model=tiny_bert", f"data.train_path={data_file('train')}", f"data.validation_path={data_file('dev')}",
            f"data.train_limit={ROWS}", f"data.validation_limit={VALIDATION_ROWS}", "trainer.max_length=64",
            "sampler=grid", "scheduler=fifo", f"study.num_samples={trials}", "study.max_concurrent=1",
            "~search.learning_rate", f"+search.learning_rate={{choices:[{rates}]}}", "search.batch_size=32",
            "search.freeze_depth=0",
            "search.weight_decay=0.01", "search.dropout=0.1", "search.layer_lr_decay=1.0", "search.warmup_ratio=0.1",
            f"trainer.max_epochs={epochs}", "resources.cpu=2", "cluster.num_cpus=2", f"storage.root={root}",
            "tracking.register_best=true", f"study.name=overhead_{trials}_{epochs}"]


def run_study_once(root: Path, trials: int, epochs: int) -> dict:
    """(b), in this fresh process: imports, Ray start, the study; phases and store seconds."""
    imported_at = time.time()
    import mlflow
    import optuna
    import ray

    from hpo import Registry, build_spec, compose, run_study

    timer = MethodTimer()
    timer.wrap(mlflow.MlflowClient, "mlflow")  # every MLflow call the driver makes, whichever module makes it
    timer.wrap(Registry, "registry")
    timer.wrap(optuna.Study, "optuna", only=("ask", "tell", "enqueue_trial"))
    spec = build_spec(compose(_overrides(root, trials, epochs)))
    imports_done = time.time()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": "bench.overhead.install_trial_probe",
                          "env_vars": {PROBE_ENV: os.environ[PROBE_ENV]}})
    ray_started = time.time()
    outcome = run_study(spec, display="quiet")
    done = time.time()
    ray.shutdown()
    assert outcome.status == "completed", outcome
    return {"wall_s": done - STARTED, "imports_s": imports_done - STARTED, "python_start_s": imported_at - STARTED,
            "ray_start_s": ray_started - imports_done, "run_study_s": done - ray_started,
            "run_study_started": ray_started, **{f"{k}_s": v for k, v in timer.seconds.items()}}


def run_bare_once(root: Path, trials: int, epochs: int) -> dict:
    """(a), in this fresh process: the same configs through ``fine_tune`` in a loop."""
    probe_first_step()
    import dataclasses

    from hpo import build_spec, compose
    from trainers import fine_tune, prepare_data
    from trainers.tiny import build_tiny_bert

    spec = build_spec(compose(_overrides(root, trials, epochs)))
    model = build_tiny_bert(spec.storage.cache_dir / "tiny_bert")
    imports_done = time.time()
    data = prepare_data(data_file("train"), data_file("dev"), model, max_length=64, train_limit=ROWS,
                        validation_limit=VALIDATION_ROWS, seed=0)

    class Quiet:
        def report(self, metrics, checkpoint_dir) -> None:
            pass

    for rate in LEARNING_RATES[:trials]:
        config = dataclasses.replace(spec.trainer, model_name_or_path=str(model), learning_rate=rate, batch_size=32,
                                     freeze_depth=0, weight_decay=0.01, dropout=0.1, layer_lr_decay=1.0,
                                     warmup_ratio=0.1, num_threads=2)
        started = time.perf_counter()
        fine_tune(config, data, Quiet())
        _emit("fine_tune", seconds=time.perf_counter() - started)
    return {"wall_s": time.time() - STARTED, "imports_s": imports_done - STARTED}


def measure(kind: str, trials: int, epochs: int) -> dict:
    """Runs one (a) or (b) in a fresh process and reads back its figures and its probe's events."""
    with tempfile.TemporaryDirectory(prefix="hpo-bench-overhead-") as tmp:
        probe, out = Path(tmp) / "probe.jsonl", Path(tmp) / "out.json"
        probe.touch()
        env = {**os.environ, PROBE_ENV: str(probe), "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "bench.overhead", "--one", kind, str(trials), str(epochs), str(out),
                        str(Path(tmp) / "root")], check=True, env=env, cwd=REPO)
        result = json.loads(out.read_text())
        events = [json.loads(line) for line in probe.read_text().splitlines()]
    steps = [e["t"] for e in events if e["kind"] == "first_step"]
    result["first_step_s"] = min(steps) - result.pop("process_started")
    result["fine_tune_s"] = sum(e["seconds"] for e in events if e["kind"] == "fine_tune")
    result["checkpoint_handoff_s"] = sum(e["seconds"] for e in events if e["kind"] == "checkpoint_handoff")
    if "run_study_started" in result:
        result["study_to_first_step_s"] = min(steps) - result.pop("run_study_started")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs=2, default=[3, 9], metavar=("SMALL", "LARGE"))
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)  # internal: one measurement in this process
    args = parser.parse_args()
    if args.one:
        kind, trials, epochs, out, root = args.one
        run = run_study_once if kind == "study" else run_bare_once
        result = run(Path(root), int(trials), int(epochs))
        Path(out).write_text(json.dumps({**result, "process_started": STARTED}))
        return

    small, large = args.trials
    rows = []
    for epochs in args.epochs:
        runs = {(kind, n): measure(kind, n, epochs) for n in (small, large) for kind in ("bare", "study")}
        slope = {kind: (runs[kind, large]["wall_s"] - runs[kind, small]["wall_s"]) / (large - small)
                 for kind in ("bare", "study")}
        study, bare = runs["study", large], runs["bare", large]
        per_trial = slope["study"] - slope["bare"]
        row = {"epochs": epochs, "trials": [small, large], "runs": {f"{k}_{n}": v for (k, n), v in runs.items()},
               "wall_ratio": study["wall_s"] / bare["wall_s"], "fixed_cost_per_trial_s": per_trial,
               "one_time_s": (study["wall_s"] - bare["wall_s"]) - per_trial * large,
               "trial_seconds": bare["fine_tune_s"] / large,
               "per_trial": {k: study[k] / large for k in ("mlflow_s", "registry_s", "optuna_s", "checkpoint_handoff_s")
                             if k in study}}
        rows.append(row)
        print(f"{epochs} epoch(s), {large} trials of {row['trial_seconds']:.1f} s: study/bare wall "
              f"{row['wall_ratio']:.2f}x; fixed cost per trial {per_trial:.2f} s (goal <= 0.5), one-time "
              f"{row['one_time_s']:.1f} s; per trial: "
              + ", ".join(f"{k} {v:.2f}" for k, v in row["per_trial"].items()), flush=True)
        print(f"  time to first step: study {study['first_step_s']:.1f} s (imports {study['imports_s']:.1f}, Ray start "
              f"{study['ray_start_s']:.1f}, study setup to first step {study['study_to_first_step_s']:.1f}); bare "
              f"{bare['first_step_s']:.1f} s", flush=True)
    per_trial = max(r["fixed_cost_per_trial_s"] for r in rows)
    per_epoch = (rows[-1]["fixed_cost_per_trial_s"] - rows[0]["fixed_cost_per_trial_s"]) / max(
        rows[-1]["epochs"] - rows[0]["epochs"], 1)
    # A 60-second trial of 3 epochs: the largest fixed cost measured, plus 2 more epochs' cost if it is positive
    # (a difference of differences, noisy with one run per cell).
    sixty = (per_trial + max(per_epoch, 0.0) * 2) / 60
    print(f"a 60-second, 3-epoch trial pays {sixty:.1%} (goal <= 3%); per extra epoch {per_epoch:.2f} s")
    write({"benchmark": "overhead", "model": "tiny_bert", "rows": ROWS, "results": rows,
           "overhead_for_60s_trials": sixty, "per_epoch_s": per_epoch,
           "goals_missed": (["fixed_cost_per_trial"] if per_trial > 0.5 else [])
           + (["60s_trials_3pct"] if sixty > 0.03 else [])}, args.out)


if __name__ == "__main__":
    main()
