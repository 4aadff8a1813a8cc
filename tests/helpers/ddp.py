"""A DDP group of training processes without Ray: torch.distributed over gloo (CPU), started with spawn, each
process running the trainer's own ``fine_tune`` and writing every epoch's metrics (tests/test_distributed.py)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist


class EpochMetrics:
    """Keeps each epoch's metrics (the reporter a worker trains with)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append({k: float(v) for k, v in metrics.items()} | {"checkpoint": checkpoint_dir is not None})


def _worker(rank: int, size: int, rendezvous: str, train: Any, cfg: Any, data: Any, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        reporter = EpochMetrics()
        train(cfg, data, reporter)
        Path(out, f"rank{rank}.json").write_text(json.dumps(reporter.history))
    finally:
        dist.destroy_process_group()


def train_in_group(size: int, train: Any, cfg: Any, data: Any, work: Path, timeout: float = 300) -> list[list[dict]]:
    """Runs ``train(cfg, data, reporter)`` in ``size`` processes forming one group; each rank's epoch metrics."""
    context = multiprocessing.get_context("spawn")
    rendezvous = work / "rendezvous"
    processes = [context.Process(target=_worker, args=(rank, size, str(rendezvous), train, cfg, data, str(work)))
                 for rank in range(size)]
    for p in processes:
        p.start()
    try:
        for p in processes:
            p.join(timeout)
            assert p.exitcode == 0, f"a worker ended with {p.exitcode}"
    finally:
        for p in processes:  # stopped by PID whatever happened
            if p.is_alive():
                p.kill()
                p.join()
    return [json.loads((work / f"rank{rank}.json").read_text()) for rank in range(size)]
