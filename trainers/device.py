"""Where a trial runs and how: seeding, the device (the GPU when there is one, TF32 allowed), mixed precision and
host-to-device copies. Shared by every task's training loop; imports torch only."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """The GPU when there is one, with TF32 matmuls allowed (fp32 work at tensor-core speed)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda")
    return torch.device("cpu")


def half_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, fp16 on older GPUs (with loss scaling), None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    dtype = half_dtype(device)
    return torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Pinned host memory and asynchronous copies on a GPU, so the copy overlaps compute."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
