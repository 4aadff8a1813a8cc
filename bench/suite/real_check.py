"""The real-run check of the replay: the same designs as real hpo studies (Ray, real training, one trial at a time) on a
few suite datasets and search seeds, each ended by the same compute budget (``study.time_budget_s``: the dataset's
16 small-model trials in its recorded seconds, as the replay's 100%, times ``--fraction``), then their best values
ordered as the replay orders them. Hours on 2 cores: run it in the background, alone.

    nohup .venv/bin/python -m bench.suite.real_check --datasets sst2 banking77 cifar10 --seeds 3 --fraction 0.5 \\
        --design random_fifo=sampler=random,scheduler=fifo,search.first_trial=sampler \\
        --design tpe_asha=search.first_trial=sampler --design default= \\
        --out bench/results/suite_real.json > real.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.suite.datasets import SUITE
from bench.suite.tables import read_table
from hpo import Registry, build_spec, compose, run_study, set_defaults

TRIALS_IN_BUDGET = 16


def real_study(dataset: str, design: str, overrides: list[str], seed: int, budget_s: float, root: Path) -> dict:
    """One real study; its best value, trials and epochs."""
    name = f"{dataset}_{design}_{seed}"
    spec = build_spec(compose([*SUITE[dataset].overrides, *overrides, f"study.name={name}", f"study.seed={seed}",
                               f"storage.root={root}", "study.max_concurrent=1", "study.num_samples=200",
                               f"study.time_budget_s={int(budget_s)}", "tracking.register_best=false",
                               "resources.cpu=2"]))
    run_study(spec)
    trials = Registry(spec.storage.registry_url).trials(name)
    values = [t.best_metric for t in trials if t.best_metric is not None]
    return {"best": max(values) if values else None, "trials": len(trials),
            "epochs": sum(t.epochs or 0 for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sst2", "banking77", "cifar10"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--design", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]")
    parser.add_argument("--tables", type=Path, default=Path("bench/results/suite"))
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="of the replay's budget (0.5: the replay's 50%% column, in half the hours)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    set_defaults()
    results: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="hpo-suite-real-") as tmp:
        for dataset in args.datasets:
            table = read_table(args.tables / f"{dataset}.csv", SUITE[dataset].metric)
            budget = args.fraction * TRIALS_IN_BUDGET * 3 * table.epoch_seconds(SUITE[dataset].small)
            for design in args.design:
                name, _, text = design.partition("=")
                overrides = [o for o in text.split(",") if o]
                runs = results.setdefault(dataset, {}).setdefault(name, {})
                for seed in range(args.seeds):
                    if str(seed) in runs:  # a stopped check continues where it was
                        continue
                    runs[str(seed)] = real_study(dataset, name, overrides, seed, budget, Path(tmp))
                    args.out.write_text(json.dumps(results, indent=1) + "\n")
                best = [r["best"] for r in runs.values() if r["best"] is not None]
                print(f"{dataset:12s} {name:14s} best {statistics.mean(best):.4f} ± {statistics.pstdev(best):.4f} "
                      f"over {len(best)} seeds", flush=True)


if __name__ == "__main__":
    main()
