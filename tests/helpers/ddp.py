"""What a test's DDP group reports: each epoch's metrics of ``fine_tune`` in every worker
(trainers.distributed.run_group starts the group; tests/test_distributed.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


class EpochMetrics:
    """Keeps each epoch's metrics, and whether a checkpoint came with them (the reporter a worker trains with)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append({k: float(v) for k, v in metrics.items()} | {"checkpoint": checkpoint_dir is not None})


def train_and_keep(train: Any, cfg: Any, data: Any) -> list[dict[str, float]]:
    """One worker's run: ``train(cfg, data, reporter)``, its epochs' metrics."""
    reporter = EpochMetrics()
    train(cfg, data, reporter)
    return reporter.history


def ranked_train(params: dict, trial: Any) -> None:
    """A ``task=custom`` function for a group: each epoch the ranks' (rank + 1) summed over the group, and a
    checkpoint folder from every rank (only rank 0's is kept)."""
    for _ in range(trial.max_epochs):
        total = torch.tensor([float(trial.rank + 1)])
        dist.all_reduce(total)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "state.txt").write_text(str(trial.rank))
            trial.report({"score": float(total), "world": float(trial.world_size)}, checkpoint_dir=folder)
