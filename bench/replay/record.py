"""Records the validation curves the replay benchmark plays back: configs drawn over hpo's default search
space, each fine-tuned on issue 9's setup, one row per (config, training seed, epoch).

Setup: all-MiniLM-L6-v2, SST-2 (the 2,000 train rows ``random.Random(0).sample`` picks, the full dev set),
max length 64, 2 threads, one config at a time, 3 epochs. Configs are drawn by Optuna's RandomSampler
(seed 0) from ``RECORDED_SPACE`` (the default space when the table was recorded); the first ``--noise-configs``
configs are trained again with other training seeds, to measure seed noise. Appends to the CSV and skips what
it already holds, so an interrupted recording continues where it stopped. ``--config`` adds a given config after
the drawn ones (numbered from ``--configs`` on, in the order given; every seed), e.g. a design's first trial.
Run from the repository root::

    .venv/bin/python -m bench.replay.record --configs 64 --noise-configs 4 --out bench/results/replay_table.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import optuna

from bench.replay.table import RECORDED_SPACE
from hpo import build_spec, compose
from trainers import TrainConfig, fine_tune, prepare_data

METRICS = ("val_accuracy", "val_loss", "val_f1_macro", "val_auc", "train_loss")
NOISE_SEEDS = (1, 2)


def draw_configs(space: dict, count: int, seed: int = 0) -> list[dict]:
    """``count`` configs drawn at random from ``space`` (Optuna distributions), reproducibly."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask(space).params for _ in range(count)]


class EpochRows:
    """fine_tune's reporter: one CSV row per epoch (``base``, the epoch, its seconds, and what :meth:`columns` makes
    of the metrics), written and flushed as soon as the epoch ends."""

    def __init__(self, writer: csv.DictWriter, stream, base: dict) -> None:
        self.writer, self.stream, self.base, self.started = writer, stream, base, time.perf_counter()

    def columns(self, metrics) -> dict:
        return {m: metrics.get(m) for m in METRICS}

    def report(self, metrics, checkpoint_dir) -> None:
        now = time.perf_counter()
        self.writer.writerow({**self.base, "epoch": int(metrics["epoch"]), "seconds": round(now - self.started, 2),
                              **self.columns(metrics)})
        self.stream.flush()
        self.started = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--noise-configs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--config", action="append", default=[], type=json.loads, metavar="JSON",
                        help="a config to record after the drawn ones, all seeds (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/replay_table.csv"))
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = build_spec(compose(["experiment=sst2_minilm", "study.name=replay_record"]))
    data = prepare_data(spec.data.train_path, spec.data.validation_path, spec.model.name_or_path, max_length=64,
                        train_limit=2000, seed=0, cache_dir=spec.storage.cache_dir / "tokenized")
    base = dataclasses.replace(spec.trainer, max_length=64, max_epochs=args.epochs, num_threads=2)
    names = list(RECORDED_SPACE)
    configs = draw_configs(RECORDED_SPACE, args.configs) + args.config
    runs = [(i, 0) for i in range(args.configs)] + [(i, s) for s in NOISE_SEEDS for i in range(args.noise_configs)]
    runs += [(i, s) for i in range(args.configs, len(configs)) for s in (0, *NOISE_SEEDS)]

    done = set()
    if args.out.is_file():
        with args.out.open() as f:
            done = {(int(r["config"]), int(r["seed"])) for r in csv.DictReader(f) if int(r["epoch"]) == args.epochs}
    fields = ["config", "seed", *names, "epoch", "seconds", *METRICS]
    new_file = not args.out.is_file()
    with args.out.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fields, lineterminator="\n")
        if new_file:
            writer.writeheader()
        for config, seed in runs:
            if (config, seed) in done:
                continue
            params = configs[config]
            train = TrainConfig.from_mapping({**dataclasses.asdict(base), **params, "seed": seed})
            print(f"config {config} seed {seed}: {params}", flush=True)
            fine_tune(train, data, EpochRows(writer, stream, {"config": config, "seed": seed, **params}))


if __name__ == "__main__":
    main()
