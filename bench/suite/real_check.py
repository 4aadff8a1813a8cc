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
from collections.abc import Mapping
from pathlib import Path

from bench.suite.datasets import SUITE
from bench.suite.portfolio import leave_one_out, modality
from bench.suite.simulate import regret
from bench.suite.tables import Table, read_table
from hpo import Registry, build_spec, compose, run_study, set_defaults
from hpo.study.portfolio import portfolio

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


def portfolio_without(dataset: str, tables: Mapping[str, Table], out: Path) -> Path:
    """The shipped portfolio was learned from every suite dataset, this one included; as in the replay, a study on
    ``dataset`` gets the one learned without it (leave one dataset out), written to ``out`` for
    ``search.portfolio_file``."""
    kind = modality(dataset)
    small = leave_one_out(tables, dataset, models=[SUITE[dataset].small])
    models = leave_one_out(tables, dataset, cost_aware=True)
    held_out = {"portfolio": {**portfolio(), kind: small}, "models": {**portfolio(searches_model=True), kind: models}}
    out.write_text(json.dumps(held_out, indent=1))
    return out


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
    designs = [(name, [o for o in text.split(",") if o]) for name, _, text in (d.partition("=") for d in args.design)]
    every = {d: read_table(args.tables / f"{d}.csv", SUITE[d].metric) for d in SUITE}  # the held-out portfolios'
    tables = {d: every[d] for d in args.datasets}
    results: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="hpo-suite-real-") as tmp:
        for seed in range(args.seeds):  # seeds outermost: a check stopped early is a whole comparison at fewer seeds
            for dataset, table in tables.items():
                budget = args.fraction * TRIALS_IN_BUDGET * 3 * table.epoch_seconds(SUITE[dataset].small)
                held_out = portfolio_without(dataset, every, Path(tmp) / f"portfolio_{dataset}_{seed}.json")
                for name, overrides in designs:
                    runs = results.setdefault(dataset, {}).setdefault(name, {})
                    if str(seed) in runs:  # a stopped check continues where it was
                        continue
                    runs[str(seed)] = real_study(dataset, name, [f"search.portfolio_file={held_out}", *overrides],
                                                 seed, budget, Path(tmp))
                    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for dataset, table in tables.items():
        print(summary(dataset, table, results.get(dataset, {})))


def summary(dataset: str, table: Table, designs: dict[str, dict[str, dict]]) -> str:
    """Each design's best value and its normalized regret against the small model's recorded oracle (3-seed mean)
    and median config, mean ± sd over the search seeds. A real study's best is one training run, so its regret can
    be below 0 where the replay's (which charges the incumbent's seed mean) cannot."""
    small = SUITE[dataset].small
    oracle, median = table.oracle(small)[1], table.median(small)
    lines = [f"{dataset}: oracle {oracle:.4f}, median config {median:.4f}"]
    for name, runs in designs.items():
        best = [r["best"] for r in runs.values() if r["best"] is not None]
        if not best:
            continue
        regrets = [regret(b, oracle, median) for b in best]
        sd = statistics.pstdev
        lines.append(f"  {name:14s} best {statistics.mean(best):.4f} ± {sd(best):.4f}  regret "
                     f"{statistics.mean(regrets):+.2f} ± {sd(regrets):.2f}  trials "
                     f"{statistics.mean(r['trials'] for r in runs.values()):.1f}  over {len(best)} seeds")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
