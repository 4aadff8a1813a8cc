"""Compares search designs on the whole suite by replay (``simulate.py``): each design on each dataset over
``--seeds`` search seeds at equal compute, normalized regret at 25%, 50% and 100% of the budget (16 full trials of the
dataset's small model, in its recorded seconds), mean and spread per dataset and over the suite, and an anytime plot
per dataset. The portfolio a dataset's study starts from is built without that dataset (leave one dataset out).

    .venv/bin/python -m bench.suite.run --seeds 10 --out bench/results/suite_replay.json \\
        --plot bench/results/suite_replay.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import optuna

from bench.suite.datasets import SUITE, SuiteDataset
from bench.suite.portfolio import leave_one_out
from bench.suite.record import study_spec
from bench.suite.simulate import (
    Design,
    baseline_quality,
    design_spec,
    mean_sd,
    model_spaces,
    regret,
    replay_confirmed,
    replay_i_epoch,
    replay_study,
)
from bench.suite.surrogate import Surrogate
from bench.suite.tables import Table, read_table

FRACTIONS = (0.25, 0.5, 1.0)
TRIALS_IN_BUDGET = 16


def designs_for(dataset: SuiteDataset, table: Table, tables: dict[str, Table]) -> list[Design]:
    models = ",".join(m.name for m in dataset.models if m.name in table.models())
    searched = ["search.first_trial=midpoint", f"+search.model={{choices: [{models}]}}"]
    if "search=images" not in dataset.overrides:
        searched.insert(0, "search=models")
    portfolio = tuple(leave_one_out(tables, dataset.name, models=[dataset.small]))
    over_models = tuple(leave_one_out(tables, dataset.name))  # which model first, and with what
    by_cost = tuple(leave_one_out(tables, dataset.name, cost_aware=True))  # the same, best per second first
    sampler = "search.first_trial=sampler"
    designs = [Design("random_fifo", ("sampler=random", "scheduler=fifo", sampler)), Design("i_epoch", kind="i_epoch"),
               Design("tpe_asha", (sampler,)), Design("tpe_fifo", (sampler, "scheduler=fifo")),
               # hpo's default (the portfolio first, TPE, ASHA) and the variants the suite decides between
               Design("default", first=portfolio), Design("default_fifo", ("scheduler=fifo",), first=portfolio),
               Design("default_rf3", ("scheduler.reduction_factor=3",), first=portfolio),
               Design("default_grace2", ("scheduler.grace_period=2",), first=portfolio),
               Design("default_no_freeze", ("search.freeze_depth=0",), first=portfolio),
               Design("default_confirm", ("confirm.top_k=2",), kind="confirmed", first=portfolio)]
    if len(table.models()) > 1:  # the large model's configs are recorded
        designs += [Design("models", tuple(searched)),
                    Design("models_per_model_asha", (*searched, "scheduler=asha_per_model")),
                    Design("models_ei_per_second", (*searched, "scheduler=asha_per_model",
                                                    "search.model_choice=ei_per_second")),
                    Design("models_portfolio", (*searched, "scheduler=asha_per_model"), first=over_models),
                    Design("models_portfolio_fifo", (*searched, "scheduler=fifo"), first=over_models),
                    Design("models_portfolio_cost", (*searched, "scheduler=asha_per_model"), first=by_cost),
                    Design("models_portfolio_cost_asha", tuple(searched), first=by_cost),  # search=models' default
                    Design("models_portfolio_cost_eips", (*searched, "scheduler=asha_per_model",
                                                          "search.model_choice=ei_per_second"), first=by_cost)]
    return designs


def evaluate(name: str, table: Table, tables: dict[str, Table], seeds: int, neighbours: int,
             bandwidth: float, only: frozenset[str] = frozenset()) -> dict:
    dataset = SUITE[name]
    recording = study_spec(dataset)
    surrogate = Surrogate(table, model_spaces(recording), k=neighbours, bandwidth=bandwidth)
    small = dataset.small
    oracle = max(table.oracle(m)[1] for m in table.models())
    median = table.median(small)
    budget = TRIALS_IN_BUDGET * 3 * table.epoch_seconds(small)
    out: dict = {"oracle": oracle, "oracle_by_model": {m: table.oracle(m)[1] for m in table.models()},
                 "median": median, "configs": {m: len(table.configs(m)) for m in table.models()},
                 "baseline": baseline_quality(table, small), "budget_s": budget, "designs": {}}
    for design in designs_for(dataset, table, tables):
        if only and design.name not in only | {"random_fifo", "i_epoch"}:  # the baselines: every summary needs them
            continue
        spec = design_spec(dataset, design)
        if design.kind == "confirmed":  # the confirmation comes at the study's end: one study per budget
            regrets = {f: [regret(replay_confirmed(spec, surrogate, f * budget, small, design, seed), oracle, median)
                           for seed in range(seeds)] for f in FRACTIONS}
            out["designs"][design.name] = _entry(regrets, design)
        else:
            traces = [replay_i_epoch(surrogate, spec, budget, small, seed) if design.kind == "i_epoch"
                      else replay_study(spec, surrogate, budget, small, design, seed) for seed in range(seeds)]
            regrets = {f: [regret(t.at(f * budget), oracle, median) for t in traces] for f in FRACTIONS}
            out["designs"][design.name] = _entry(
                regrets, design, anytime=[statistics.mean(regret(t.at(f * budget), oracle, median) for t in traces)
                                          for f in [i / 20 for i in range(1, 21)]],
                gain_share=_gain_share(traces, out["baseline"], budget) if design.kind == "study" else None,
                trials=statistics.mean(t.trials for t in traces),
                gap=statistics.mean(100 * (oracle - _or(t.at(budget), median)) for t in traces))
        r = out["designs"][design.name]["regret"]
        print(f"{name:14s} {design.name:22s} " + "  ".join(f"@{f}: {r[str(f)]['mean']:.3f}±{r[str(f)]['sd']:.3f}"
                                                           for f in FRACTIONS), flush=True)
    return out


def _entry(regrets: dict, design: Design, anytime: list[float] | None = None, gain_share: float | None = None,
           trials: float | None = None, gap: float | None = None) -> dict:
    """A design's results on one dataset: its regret (mean, sd over search seeds) at each budget fraction, its
    anytime curve (20 points; None where each budget is its own study), the first 4 trials' gain share, and how
    many points the winner at the whole budget lies below the best model's oracle (mean over search seeds)."""
    return {"regret": {str(f): {"mean": mean_sd(r)[0], "sd": mean_sd(r)[1]} for f, r in regrets.items()},
            "anytime": anytime, "gain_share_first_4": gain_share, "trials": trials, "first": list(design.first),
            "points_below_oracle": gap}


def _or(found: float | None, otherwise: float) -> float:
    return otherwise if found is None else found


def _gain_share(traces, baseline: float | None, budget: float) -> float | None:
    """How much of the whole search's gain over the fixed baseline config its first 4 trials reach (mean)."""
    if baseline is None:
        return None
    shares = [((t.after(4) or baseline) - baseline) / (t.at(budget) - baseline)
              for t in traces if t.at(budget) is not None and t.at(budget) > baseline]
    return statistics.mean(shares) if shares else None


def summary(results: dict) -> dict:
    """Per design over the datasets where it ran: the suite mean of its regret at each budget, on how many datasets it
    is below both baselines (random + FIFO and i-Epoch) at every budget, and its first 4 trials' mean share of the
    whole search's gain over the baseline config."""
    names = {d for r in results.values() for d in r["designs"]}
    out = {}
    for name in sorted(names):
        ran = [r["designs"] for r in results.values() if name in r["designs"]]
        shares = [d[name]["gain_share_first_4"] for d in ran if d[name]["gain_share_first_4"] is not None]
        out[name] = {
            **{str(f): statistics.mean(d[name]["regret"][str(f)]["mean"] for d in ran) for f in FRACTIONS},
            "beats_baselines_on": sum(all(d[name]["regret"][str(f)]["mean"] < d[b]["regret"][str(f)]["mean"]
                                          for f in FRACTIONS for b in ("random_fifo", "i_epoch")) for d in ran),
            "datasets": len(ran),
            "gain_share_first_4": statistics.mean(shares) if shares else None,
            "within_1_point_on": sum(d[name]["points_below_oracle"] is not None
                                     and d[name]["points_below_oracle"] <= 1 for d in ran)}
    return out


def markdown(results: dict, suite: dict, field: str = "mean") -> str:
    """The suite table as the results README shows it: per dataset the oracle, median and baseline config, and each
    design's regret ``field`` (``mean`` or ``sd`` over search seeds) at 25% / 50% / 100%; then the suite mean."""
    designs = list(next(iter(results.values()))["designs"])
    head = ["dataset", "configs", "oracle (seed mean)", "median config", "baseline config", *designs]
    lines = ["| " + " | ".join(f"`{h}`" if h in designs else h for h in head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, str(sum(r["configs"].values())), f"{r['oracle']:.4f}", f"{r['median']:.4f}",
                 f"{r['baseline']:.4f}" if r["baseline"] is not None else "-"]
        cells += [" / ".join(f"{r['designs'][d]['regret'][str(f)][field]:.2f}" for f in FRACTIONS)
                  if d in r["designs"] else "-" for d in designs]
        lines.append("| " + " | ".join(cells) + " |")
    if field == "mean":
        lines.append("| **suite mean** | | | | | " + " | ".join(
            " / ".join(f"{suite[d][str(f)]:.3f}" for f in FRACTIONS) for d in designs) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    x = [i / 20 for i in range(1, 21)]
    for ax, (name, r) in zip(axes.flat, results.items(), strict=False):
        for design, d in r["designs"].items():
            if d["anytime"] is not None:
                ax.plot(x, d["anytime"], label=design)
        ax.set_title(name)
        ax.set_ylim(-0.2, 1.5)
        ax.axhline(0, color="grey", lw=0.5)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("share of the budget (16 full trials of the small model, recorded seconds)")
    fig.supylabel("normalized regret (0 = oracle, 1 = median config), mean over search seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=Path, default=Path("bench/results/suite"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--neighbours", type=int, default=3,
                        help="recorded configs blended per replayed config (1: the nearest only; see surrogate.py)")
    parser.add_argument("--bandwidth", type=float, default=0.3, help="the blend's smoothing (see surrogate.py)")
    parser.add_argument("--designs", default="", help="comma-separated design names to run (default: all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--markdown", type=Path, help="write the suite tables (means, then sds) here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tables = {d: read_table(args.tables / f"{d}.csv", SUITE[d].metric) for d in SUITE}
    tables = {d: t for d, t in tables.items() if len(t.configs()) >= 4}
    only = frozenset(filter(None, args.designs.split(",")))
    results = {name: evaluate(name, table, tables, args.seeds, args.neighbours, args.bandwidth, only)
               for name, table in tables.items()}
    suite = summary(results)
    for design, at in suite.items():
        share = at["gain_share_first_4"]
        print(f"{'SUITE':14s} {design:22s} " + "  ".join(f"@{f}: {at[str(f)]:.3f}" for f in FRACTIONS)
              + f"  beats both baselines on {at['beats_baselines_on']}/{at['datasets']}"
              + (f"  first 4 trials: {share:.0%} of the gain" if share is not None else "")
              + f"  within 1 point of the oracle on {at['within_1_point_on']}/{at['datasets']}")
    if args.out:
        record = {"seeds": args.seeds, "neighbours": args.neighbours, "bandwidth": args.bandwidth,
                  "datasets": results, "suite_mean": suite}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    if args.markdown:
        args.markdown.write_text(markdown(results, suite) + "\n\n" + markdown(results, suite, "sd") + "\n")


if __name__ == "__main__":
    main()
