"""A portfolio of first trials learned from the suite's tables by greedy portfolio construction (Feurer et al. 2022,
*Auto-sklearn 2.0*; Wistuba et al. 2015): start empty; add the recorded config that most lowers the mean, over the
training datasets, of the best normalized regret the portfolio reaches there; repeat. Every dataset of a modality
recorded the same drawn configs (one seeded draw over the same space), so a candidate's value is known on each.

Two per modality: one of the small model's configs (a single-model study: the recorded hyperparameters of one
model; the suite's small model is the one recorded on the most configs), and one over every recorded model (a study
that searches the model, ``search=models``: which model to try first, and with what), ordered by gain per unit of
cost, so a large model's entry comes first only if it gains as many times more as it costs. Shipped in the package
(``hpo/study/portfolio.json``: ``search.first_trial=portfolio``) built from every suite dataset; the suite's own
evaluation builds each dataset's portfolio without it (leave one dataset out)::

    .venv/bin/python -m bench.suite.portfolio --tables bench/results/suite --out hpo/study/portfolio.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from bench.suite.datasets import SUITE
from bench.suite.simulate import regret
from bench.suite.surrogate import config_quality
from bench.suite.tables import Table, read_table

SIZE = 4  # the first trials a study evaluates from it


def modality(dataset: str) -> str:
    return "image" if "task=image_classification" in SUITE[dataset].overrides else "text"


def candidate_regrets(tables: Mapping[str, Table],
                      models: Collection[str] | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """Per candidate (model, config) recorded on every given dataset, of ``models`` (None: any): its normalized
    regret on each."""
    shared = set.intersection(*(set(t.configs(drawn_only=False)) for t in tables.values()))
    out: dict[tuple[str, str], dict[str, float]] = {}
    for model, config in sorted(c for c in shared if models is None or c[0] in models):
        out[(model, config)] = {}
        for name, table in tables.items():
            oracle = max(table.oracle(m)[1] for m in table.models())
            found = config_quality(table, model, config, 99)
            out[(model, config)][name] = regret(found, oracle, table.median(SUITE[name].small))
    return out


def greedy(regrets: Mapping[tuple[str, str], Mapping[str, float]], size: int = SIZE,
           cost: Mapping[str, float] | None = None) -> list[tuple[str, str]]:
    """The greedy portfolio: each step adds the candidate that lowers the mean of per-dataset best regret most, or,
    given each model's ``cost`` (per epoch, relative), most per unit of cost (ties: the larger drop), so an entry 6x
    as costly as another comes first only if it gains 6x as much.

    >>> r = {("m", "0"): {"a": 0.0, "b": 1.0}, ("m", "1"): {"a": 0.5, "b": 0.4}, ("big", "2"): {"a": 0, "b": 0}}
    >>> greedy(r, 2), greedy(r, 2, cost={"m": 1.0, "big": 6.0})
    ([('big', '2'), ('m', '0')], [('m', '1'), ('m', '0')])
    """
    chosen: list[tuple[str, str]] = []
    datasets = list(next(iter(regrets.values()))) if regrets else []
    best = dict.fromkeys(datasets, 1.0)
    for _ in range(min(size, len(regrets))):
        now = statistics.mean(best.values())

        def gain(c: tuple[str, str], best: dict[str, float] = best, now: float = now) -> tuple[float, float]:
            drop = now - statistics.mean(min(best[d], regrets[c][d]) for d in datasets)
            return (drop / (cost[c[0]] if cost else 1.0), drop)

        pick = max((c for c in regrets if c not in chosen), key=gain)
        chosen.append(pick)
        best = {d: min(best[d], regrets[pick][d]) for d in datasets}
    return chosen


def relative_cost(tables: Mapping[str, Table]) -> dict[str, float]:
    """Each model's seconds per epoch over the suite small model's, mean over the datasets where both ran."""
    models = {m for t in tables.values() for m in t.models()}
    return {m: statistics.mean(t.epoch_seconds(m) / t.epoch_seconds(SUITE[d].small)
                               for d, t in tables.items() if m in t.models()) for m in sorted(models)}


def build(tables: Mapping[str, Table], datasets: Sequence[str], size: int = SIZE,
          models: Collection[str] | None = None, cost_aware: bool = False) -> list[dict]:
    """The portfolio learned from ``datasets`` (one modality) over the configs of ``models`` (None: every recorded
    model): ``{"model": ..., **params}`` entries, best first (``cost_aware``: best per unit of cost first)."""
    training = {d: tables[d] for d in datasets}
    picked = greedy(candidate_regrets(training, models), size, relative_cost(training) if cost_aware else None)
    first = tables[datasets[0]]
    return [dict(first.params(model, config)) for model, config in picked]


def leave_one_out(tables: Mapping[str, Table], held_out: str, size: int = SIZE,
                  models: Collection[str] | None = None, cost_aware: bool = False) -> list[dict]:
    """The portfolio a study on ``held_out`` gets when the suite is evaluated: built from the other datasets of its
    modality, over the configs of ``models`` (None: every recorded model)."""
    others = [d for d in tables if d != held_out and modality(d) == modality(held_out)]
    return build(tables, others, size, models, cost_aware) if others else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=Path, default=Path("bench/results/suite"))
    parser.add_argument("--out", type=Path, default=Path("hpo/study/portfolio.json"))
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    tables = {d: read_table(args.tables / f"{d}.csv", SUITE[d].metric) for d in SUITE}
    tables = {d: t for d, t in tables.items() if t.configs()}
    kinds = {kind: [d for d in tables if modality(d) == kind] for kind in sorted({modality(d) for d in tables})}
    portfolio = {kind: build(tables, names, args.size, [SUITE[names[0]].small]) for kind, names in kinds.items()}
    models = {kind: build(tables, names, args.size, cost_aware=True) for kind, names in kinds.items()}
    args.out.write_text(json.dumps({
        "built_by": "python -m bench.suite.portfolio (greedy over the suite's recorded tables)",
        "datasets": sorted(tables), "configs_per_dataset": {d: len(t.configs()) for d, t in sorted(tables.items())},
        "portfolio": portfolio, "models": models}, indent=1) + "\n")
    print(json.dumps({"portfolio": portfolio, "models": models}, indent=1))


if __name__ == "__main__":
    main()
