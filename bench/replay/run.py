"""Replays hpo studies over the recorded table, in seconds each: every design (Hydra overrides on the default
study) over ``--seeds`` search seeds, through the real Ray Tune scheduler and hpo's searcher and ledger, with
trials that play back recorded curves (``trainable.py``) instead of training. Trials run one at a time, so a
study's anytime curve (best value so far against epochs spent) does not depend on timing.

A design is ``NAME=OVERRIDE,OVERRIDE...``; the pseudo-override ``warm`` first runs another study of the same
design (search seed + 1000, not counted) and starts the measured one from its best configs
(``warm_start.from``). Example::

    .venv/bin/python -m bench.replay.run --seeds 20 --design default= --design complete=search.feedback=complete \\
        --design warm=warm --out bench/results/replay_ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.replay.table import (
    RECORDED_SPACE,
    ReplayTable,
    anytime,
    best_at_budget,
    epochs_to_reach,
    top_k_after_one_epoch,
)
from bench.replay.trainable import replay_trainable
from hpo import Registry, build_spec, compose, run_study, set_defaults

# The data is tokenized but never trained on: keep it small. 16 trials: long enough for every budget compared.
BASE = ["experiment=sst2_minilm", "study.max_concurrent=1", "study.num_samples=16", "tracking.register_best=false",
        "data.train_limit=200", "data.validation_limit=100"]
WARM = "warm"


def replay(table: ReplayTable, overrides: list[str], name: str, seed: int, root: Path) -> list[float]:
    """One replayed study's anytime curve (a ``warm`` design first runs the study it starts from)."""
    if WARM in overrides:
        overrides = [o for o in overrides if o != WARM]
        replay(table, overrides, f"{name}_source", seed + 1000, root)
        overrides.append(f"warm_start.from={name}_source")
    spec = build_spec(compose([*BASE, f"study.name={name}", f"study.seed={seed}", f"storage.root={root}",
                               *overrides]))
    run_study(spec, trainable=replay_trainable(table, spec.objective.metric))
    return anytime([curve for _, curve in trial_curves(spec)], spec.objective.mode == "max")


def trial_curves(spec) -> list[tuple[dict, list[float]]]:
    """A finished study's trials in the order they ran (one at a time): params and per-epoch values."""
    trials = sorted(Registry(spec.storage.registry_url).trials(spec.name), key=lambda t: t.number)
    return [(t.params, [t.values[e] for e in sorted(t.values)]) for t in trials]


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "sd": statistics.pstdev(values), "min": min(values), "max": max(values),
            "n": len(values)}


def summarize(curves: list[list[float]], budgets: list[int], target: float) -> dict:
    reached = [epochs_to_reach(c, target) for c in curves]
    return {
        "best_at_budget": {b: spread([best_at_budget(c, b) for c in curves]) for b in budgets},
        "epochs_to_target": spread([r for r in reached if r is not None]) if any(reached) else None,
        "target_reached_by": sum(r is not None for r in reached),
        "epochs_spent": spread([len(c) for c in curves]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=Path("bench/results/replay_table.csv"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--design", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]")
    parser.add_argument("--top-k", metavar="N,K", help="also the baseline: N random configs 1 epoch, the best K on")
    parser.add_argument("--target", type=float, default=0.828, help="the BERT-paper grid's best (issue 9)")
    parser.add_argument("--budgets", default="3,6,9,12,18,24")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    set_defaults()

    import ray

    table = ReplayTable.from_csv(args.table, RECORDED_SPACE)
    budgets = [int(b) for b in args.budgets.split(",")]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    results = {"table": str(args.table), "configs": len(table.recorded), "oracle_3_epochs": table.oracle(3),
               "target": args.target, "seeds": args.seeds, "base": BASE, "designs": {}}
    with tempfile.TemporaryDirectory(prefix="hpo-replay-") as tmp:
        for design in args.design:
            name, _, overrides = design.partition("=")
            curves = [replay(table, [o for o in overrides.split(",") if o], f"{name}_{seed}", seed, Path(tmp))
                      for seed in range(args.seeds)]
            results["designs"][name] = {"overrides": overrides, **summarize(curves, budgets, args.target),
                                        "curves": curves}
            at = results["designs"][name]["best_at_budget"]
            print(f"RESULT {name}: " + "  ".join(f"@{b}: {at[b]['mean']:.4f}±{at[b]['sd']:.4f}" for b in budgets),
                  flush=True)
            if args.out:  # after every design: a long run keeps what it finished
                args.out.write_text(json.dumps(results, indent=1) + "\n")
        if args.top_k:  # no study: the baseline is computed from the table over the default space
            n, k = (int(x) for x in args.top_k.split(","))
            space = build_spec(compose(BASE)).space.distributions
            curves = [top_k_after_one_epoch(table, space, n, k, seed) for seed in range(args.seeds)]
            results["designs"][f"top_{k}_of_{n}"] = {"overrides": f"(no hpo study) {n} random configs, 1 epoch "
                                                     f"each, the best {k} trained on",
                                                     **summarize(curves, budgets, args.target), "curves": curves}
            if args.out:
                args.out.write_text(json.dumps(results, indent=1) + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
