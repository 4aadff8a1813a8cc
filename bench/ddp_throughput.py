"""Training throughput of a DDP group against one worker (issue 25), measured in the same run.

The trainer's own loop (``trainers.loop.fine_tune``) on all-MiniLM-L6-v2, SST-2 rows at max length 64, one epoch;
throughput is its ``train_examples_per_s`` (all workers' rows over the chief's training seconds). Arms alternate,
``--repeats`` times each, so a slower stretch of the machine falls on every arm alike.

- CPU (this machine): ``one`` (one process, every core's thread) against ``ddp`` (a process per core, gloo);
- GPU (when one is lent): ``one`` (one GPU) against ``dataparallel`` (every visible GPU from one process: the
  baseline the trainer dropped, put back for this arm only) against ``ddp`` (a process per GPU, nccl). Scaling
  efficiency = ddp / (GPUs x one).

    .venv/bin/python -m bench.ddp_throughput --rows 512 --repeats 2 --out bench/results/ddp_throughput-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
from pathlib import Path
from unittest import mock

import torch

from bench.common import data_file, machine, minilm, write
from trainers import TrainConfig, fine_tune, prepare_data
from trainers.distributed import Workers, run_group


class _Epochs:
    def __init__(self) -> None:
        self.history: list[dict] = []

    def report(self, metrics, checkpoint_dir) -> None:
        self.history.append(dict(metrics))


def examples_per_s(cfg: TrainConfig, data) -> float:
    """One run of ``cfg``: its first epoch's training throughput."""
    epochs = _Epochs()
    fine_tune(cfg, data, epochs)
    return float(epochs.history[0]["train_examples_per_s"])


def _data_parallel(self: Workers, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The one-process multi-GPU wrapper the trainer had before DDP groups, for the ``dataparallel`` arm only."""
    return torch.nn.DataParallel(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", help="a model folder (default: all-MiniLM-L6-v2 from its package, via conf/)")
    parser.add_argument("--data", type=Path, help="a folder with train.csv(.gz) and dev.csv(.gz) (default: data/sst2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    gpus = torch.cuda.device_count()
    if gpus == 1:
        raise SystemExit("one GPU visible: DDP scaling needs two or more (CUDA_VISIBLE_DEVICES= measures the CPU arms)")
    # Given paths keep Hydra out (a GPU machine may have only torch and transformers); else the default study's.
    model = args.model or minilm()
    train, dev = ((str(next(args.data.glob(f"{split}.csv*"))) for split in ("train", "dev")) if args.data
                  else (data_file("train"), data_file("dev")))
    data = prepare_data(train, dev, model, max_length=64, train_limit=args.rows, validation_limit=64)
    cores = os.cpu_count() or 1
    size = gpus if gpus > 1 else 2
    base = TrainConfig(model_name_or_path=model, max_epochs=1, batch_size=args.batch_size, learning_rate=5e-5)
    arms = {"one": lambda: examples_per_s(dataclasses.replace(base, num_threads=cores), data),
            "ddp": lambda: run_group(size, examples_per_s, dataclasses.replace(base, num_threads=max(1, cores // size)),
                                     data, backend="nccl" if gpus > 1 else "gloo")[0]}
    if gpus > 1:
        def dataparallel() -> float:
            with mock.patch.object(Workers, "wrap", _data_parallel):
                return examples_per_s(base, data)
        arms["dataparallel"] = dataparallel
    measured: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        for arm, run in arms.items():
            measured[arm].append(run())
            print(f"{arm}: {measured[arm][-1]:.1f} examples/s", flush=True)
    mean = {arm: statistics.mean(values) for arm, values in measured.items()}
    print(f"\n| arm | examples/s (mean of {args.repeats}) | / one |\n|---|---|---|")
    for arm, value in mean.items():
        print(f"| {arm} | {value:.1f} | {value / mean['one']:.2f} |")
    if gpus > 1:
        print(f"DDP scaling efficiency on {gpus} GPUs: {mean['ddp'] / (gpus * mean['one']):.0%}")
    write({"machine": machine(), "rows": args.rows, "batch_size": args.batch_size, "workers": size, "gpus": gpus,
           "measured": measured, "mean": mean, "ratio_to_one": {a: v / mean["one"] for a, v in mean.items()}},
          args.out)


if __name__ == "__main__":
    main()
