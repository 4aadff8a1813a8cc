"""What a study spends per trial beyond training: new worker processes vs reused ones.

Runs the same small study (tiny BERT, real SST-2 rows, fifo, 1 epoch per trial) with
``resources.reuse_workers=false`` (Ray's default: a new process, importing torch and transformers,
per trial) and ``true`` (hpo's default), alternating, in one local Ray, and prints study wall time
per trial and the ratio. CPU figures on whatever machine runs it.

    python -m bench.trial_overhead --trials 8 --repeats 2 --out bench/results/trial_overhead-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import data_file
from hpo import build_spec, compose, run_study, set_defaults


def study_seconds(reuse: bool, trials: int, root: Path, name: str, data_dir: Path) -> float:
    spec = build_spec(compose([
        "model=tiny_bert", f"model.name_or_path={root / 'tiny_bert'}", f"data.train_path={_csv(data_dir, 'train')}",
        f"data.validation_path={_csv(data_dir, 'dev')}", "data.train_limit=300", "data.validation_limit=100",
        f"study.name={name}", f"study.num_samples={trials}", "study.max_concurrent=2", "scheduler=fifo",
        "trainer.max_epochs=1", f"resources.reuse_workers={str(reuse).lower()}", f"storage.root={root}",
        "tracking.register_best=false",
    ]))
    started = time.perf_counter()
    outcome = run_study(spec)
    assert outcome.status == "completed", outcome
    return time.perf_counter() - started


def _csv(data_dir: Path, split: str) -> str:
    return next(str(p) for p in (data_dir / f"{split}.csv", data_dir / f"{split}.csv.gz") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data_dir = Path(data_file("train")).parent
    set_defaults()

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    seconds: dict[str, list[float]] = {"new_process_per_trial": [], "reused_workers": []}
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        study_seconds(True, 1, Path(tmp), "warmup", data_dir)  # one-time costs: MLflow store, model, data cache
        for repeat in range(args.repeats):
            for reuse, key in ((False, "new_process_per_trial"), (True, "reused_workers")):
                took = study_seconds(reuse, args.trials, Path(tmp), f"{key}_{repeat}", data_dir)
                seconds[key].append(took)
                print(f"{key}: {took:.1f}s for {args.trials} trials ({took / args.trials:.2f}s per trial)", flush=True)
    ray.shutdown()

    median = {k: statistics.median(v) for k, v in seconds.items()}
    result = {
        "benchmark": "trial_overhead", "device": f"CPU ({platform.processor() or platform.machine()}, "
                                                  f"{os.cpu_count()} cores)",
        "trials": args.trials, "repeats": args.repeats, "seconds": seconds,
        "seconds_per_trial": {k: v / args.trials for k, v in median.items()},
        "speedup_reused_vs_new": median["new_process_per_trial"] / median["reused_workers"],
    }
    print(f"study wall time, reused workers vs a new process per trial: "
          f"{result['speedup_reused_vs_new']:.2f}x faster (median of {args.repeats})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
