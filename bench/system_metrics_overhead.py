"""What recording system metrics costs a trial (``tracking.system_metrics``, on by default).

The same fine-tune (all-MiniLM-L6-v2 on an SST-2 subset), in this run and alternated (so drift in clocks or load hits
both alike): ``off``, the trial's reporter alone; ``on``, the reporter with hpo's sampler running (MLflow's CPU/GPU
monitors and the trial process's own, every 2 s on a thread, averaged into each epoch's report). Printed: each arm's
median seconds per epoch (training and evaluation, as ``epoch_seconds``) and on / off (goal <= 1.01), and the
system metrics one trial's epoch carries.

    python -m bench.system_metrics_overhead [--rows 512] [--repeats 3] [--out bench/results/system_metrics.json]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping
from pathlib import Path

import torch

from bench.common import RESULTS, data_file, minilm, write
from hpo.study._system_metrics import SystemSampler
from trainers import TrainConfig, fine_tune, prepare_data
from trainers.data import PreparedData


class _Reporter:
    """What a trial's reporter does with an epoch, with the sampler's averages added when one runs."""

    def __init__(self, sampler: SystemSampler | None) -> None:
        self.sampler, self.history = sampler, []

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append({**metrics, **(self.sampler.take() if self.sampler else {})})


def epoch_seconds(config: TrainConfig, data: PreparedData, sampled: bool) -> tuple[float, dict[str, float]]:
    """Mean ``epoch_seconds`` of one fine-tune, and its last epoch's report."""
    if sampled:
        with SystemSampler() as sampler:
            reporter = _Reporter(sampler)
            fine_tune(config, data, reporter)
    else:
        reporter = _Reporter(None)
        fine_tune(config, data, reporter)
    return statistics.mean(r["epoch_seconds"] for r in reporter.history), reporter.history[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "system_metrics.json")
    args = parser.parse_args()
    model = minilm()
    data = prepare_data(data_file("train"), data_file("dev"), model, max_length=64, train_limit=args.rows,
                        validation_limit=256)
    config = TrainConfig(model_name_or_path=model, batch_size=32, max_epochs=args.epochs, pooling="mean",
                         learning_rate=5e-5, num_threads=torch.get_num_threads())
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    last: dict[str, float] = {}
    for _ in range(args.repeats):
        for arm in ("off", "on"):
            value, report = epoch_seconds(config, data, sampled=arm == "on")
            seconds[arm].append(value)
            last = report if arm == "on" else last
    off, on = statistics.median(seconds["off"]), statistics.median(seconds["on"])
    pairs = [b / a for a, b in zip(seconds["off"], seconds["on"], strict=True)]  # each repeat's two arms, back to back
    system = {k: v for k, v in last.items() if k.startswith("system/")}
    print(f"seconds per epoch: off {off:.2f}, on {on:.2f}; on / off {on / off:.4f} (goal <= 1.01); per repeat "
          f"{[round(p, 3) for p in pairs]} (off alone ranged {min(seconds['off']):.2f}-{max(seconds['off']):.2f} s)")
    print("one epoch's system metrics: " + ", ".join(f"{k}={v}" for k, v in sorted(system.items())))
    write({"benchmark": "system_metrics_overhead", "model": "all-MiniLM-L6-v2", "rows": args.rows,
           "epochs": args.epochs, "repeats": args.repeats, "seconds_per_epoch": seconds, "median_off": off,
           "median_on": on, "on_over_off": on / off, "per_repeat_on_over_off": pairs, "goal": 1.01,
           "goal_met": on / off <= 1.01,
           "system_metrics_of_one_epoch": system}, args.out)


if __name__ == "__main__":
    main()
