"""What a test's DDP group reports: each epoch's metrics of ``fine_tune`` in every worker
(trainers.distributed.run_group starts the group; tests/test_distributed.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


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
