"""Surviving CUDA out-of-memory: the same batch in smaller micro-batches, same effective batch size.

A trial that runs out of GPU memory at ``batch_size=64`` is usually a perfectly good config on a
smaller GPU or beside a neighbour trial. Instead of failing it, the training step splits each batch
into micro-batches and accumulates their gradients, so the optimizer sees exactly the gradient of
the whole batch (same effective batch size, same number of optimizer steps, same LR schedule).
Each OOM halves the micro-batch, down to ``floor``; below that the run ends with
:class:`TrainingOutOfMemory`. Example::

    micro = MicroBatching(batch_size=64, floor=4)
    micro.shrink()      # after an OOM: 32 rows per micro-batch, 2 accumulation steps
    micro.accumulation  # -> 2
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class TrainingOutOfMemory(RuntimeError):
    """Out of memory even at the smallest micro-batch allowed: the config does not fit this device."""

    def __init__(self, setting: str, batch_size: int, micro_batch_size: int, floor: int) -> None:
        smaller = ("trainer.min_micro_batch_size, the search's batch_size or trainer.max_length"
                   if setting == "batch_size" else "trainer.max_length")
        super().__init__(
            f"out of memory at micro-batch {micro_batch_size} ({setting} {batch_size}, floor {floor}); "
            f"lower {smaller}, or give trials more GPU"
        )
        self.setting, self.batch_size, self.micro_batch_size, self.floor = setting, batch_size, micro_batch_size, floor


class MicroBatching:
    """How many rows go through the model at once; halves on each out-of-memory error.

    ``setting`` names the batch being split (``batch_size`` for training, ``eval_batch_size`` for
    validation) in the error a user reads at the floor.
    """

    def __init__(self, batch_size: int, floor: int, micro_batch_size: int | None = None,
                 setting: str = "batch_size") -> None:
        self.batch_size, self.floor, self.setting = batch_size, min(floor, batch_size), setting
        self.size = min(micro_batch_size or batch_size, batch_size)

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step (for a full batch)."""
        return math.ceil(self.batch_size / self.size)

    def shrink(self) -> None:
        """Halves the micro-batch after an OOM; raises :class:`TrainingOutOfMemory` at the floor."""
        if self.size <= self.floor:
            raise TrainingOutOfMemory(self.setting, self.batch_size, self.size, self.floor)
        self.size = max(self.floor, self.size // 2)

    def split(self, batch: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """The batch's rows in micro-batches (views, no copies)."""
        rows = len(batch["labels"])
        for start in range(0, rows, self.size):
            yield {k: v[start:start + self.size] for k, v in batch.items()}


def release_cuda_memory(device: torch.device) -> None:
    """Returns cached blocks after an OOM, so the retry starts from what is really in use."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
