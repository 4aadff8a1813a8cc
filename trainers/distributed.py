"""Data-parallel training across processes (PyTorch's DistributedDataParallel): which rows each worker trains and
validates, and how the workers' results combine, so that N workers train the same model and report the same metrics
as one worker would with the same seed and global batch.

Why: a trial bigger than one GPU. ``torch.nn.DataParallel`` copies the model to every GPU each step from one process
on one node; DDP runs a process per device, on one node or several, and all-reduces gradients. The process group is
torch.distributed's default group, set up by whoever starts the workers (Ray Train's ``TorchTrainer`` in a study, a
test's processes here); without one, everything here is the single worker's identity. The rules that keep N workers
equal to one:

- every worker walks the same seeded epoch order and takes every N-th row of each global batch (``share``), so the
  steps and the learning-rate schedule are the global ones;
- each worker's summed loss is divided by the global batch's rows / N: DDP averages the gradients over the N workers,
  so the step is the global batch's mean gradient, whatever the split;
- validation rows are shared out, then gathered back in their order (``gather``): metrics are over the whole split.

Example (one process: the identity)::

    >>> Workers.current().share([5, 6, 7])
    [5, 6, 7]
    >>> Workers(rank=1, size=2).share([5, 6, 7])
    [6]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Workers:
    """This process's place in its training group: ``rank`` of ``size`` workers (0 of 1 alone)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> Workers:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def chief(self) -> bool:
        """The worker that writes checkpoints and whose report counts."""
        return self.rank == 0

    def share(self, rows: list[int]) -> list[int]:
        """This worker's rows of a global batch (or of the validation split): every ``size``-th from ``rank``."""
        return rows[self.rank :: self.size]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` whose backward passes all-reduce its gradients across the group (itself for one worker).
        Trainable parameters a forward leaves unused (a hub model's extra head) are allowed for: without
        ``find_unused_parameters`` DDP would fail at the second step. ``static_graph`` would spare its search of the
        graph each step, but it breaks under ``no_sync``, which the micro-batches use (pytorch/pytorch#187732)."""
        if self.size == 1:
            return model
        gpu = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" \
            else None  # a process per GPU: the one its launcher set (torch.cuda.set_device)
        return DistributedDataParallel(model, device_ids=gpu, find_unused_parameters=True)

    def total(self, *values: float) -> list[float]:
        """Each value summed over the group (a count, a loss sum), in float64."""
        if self.size == 1:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        return summed.tolist()

    def gather(self, rows: list[int], outputs: torch.Tensor, targets: torch.Tensor,
               total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split's (outputs, targets), each worker having computed ``rows`` of it, back in split order."""
        if self.size == 1:
            return outputs, targets
        parts: list = [None] * self.size
        dist.all_gather_object(parts, (rows, outputs.cpu(), targets.cpu()))
        whole = torch.empty(total, *outputs.shape[1:], dtype=outputs.dtype)
        truth = torch.empty(total, *targets.shape[1:], dtype=targets.dtype)
        for shared, out, target in parts:
            index = torch.tensor(shared, dtype=torch.long)
            whole[index], truth[index] = out, target
        return whole, truth


def no_sync_unless(last: bool, model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """Within a step's micro-batches, gradients are all-reduced once, on the last one's backward: every worker then
    joins exactly one all-reduce per step, however many micro-batches its share took (an OOM halves them)."""
    if last or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def last_flags(count: int) -> Iterator[bool]:
    """True for the last of ``count`` items."""
    return (i == count - 1 for i in range(count))


def run_group(size: int, function: Callable[..., Any], *args: Any, backend: str = "gloo",
              timeout_s: float = 1800) -> list[Any]:
    """``function(*args)`` in ``size`` new processes forming one group (a file rendezvous: one machine); each rank's
    return value, rank 0 first. Every process is stopped by the time it returns. Studies start their groups with
    Ray Train instead; this is for a machine without Ray (benchmarks, tests)."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hpo-group-") as work:
        processes = [context.Process(target=_member, args=(rank, size, backend, work, function, args))
                     for rank in range(size)]
        for process in processes:
            process.start()
        try:
            for process in processes:
                process.join(timeout_s)
                if process.exitcode != 0:
                    raise RuntimeError(f"a worker of the group ended with exit code {process.exitcode}")
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        return [pickle.loads(Path(work, f"rank{rank}.pkl").read_bytes()) for rank in range(size)]


def _member(rank: int, size: int, backend: str, work: str, function: Callable[..., Any], args: tuple) -> None:
    if backend == "nccl":
        torch.cuda.set_device(rank)  # one GPU per process
    dist.init_process_group(backend, init_method=f"file://{work}/rendezvous", rank=rank, world_size=size)
    try:
        Path(work, f"rank{rank}.pkl").write_bytes(pickle.dumps(function(*args)))
    finally:
        dist.destroy_process_group()
