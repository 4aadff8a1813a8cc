"""AdamW parameter groups (layer-wise LR decay, no decay on bias/LayerNorm) and the LR schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainers.modeling import encoder_parts


@dataclass(frozen=True)
class GroupKey:
    depth: int  # 0 = embeddings, 1..L = encoder blocks, L+1 = head and pooler
    decay: bool


def _no_decay_params(model: nn.Module) -> set[int]:
    """Biases and normalization weights: decaying them only hurts (BERT's recipe)."""
    ids = set()
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if is_norm or name == "bias" or name.endswith("_bias"):
                ids.add(id(param))
    return ids


def _depths(model: nn.Module, layer_lr_decay: float,
            parts: tuple[nn.Module, list[nn.Module]] | None) -> tuple[dict[int, int], int]:
    """Maps id(param) -> depth; everything outside embeddings (or an image backbone's stem) and blocks is the
    head."""
    if layer_lr_decay == 1.0:
        return {}, 0  # every parameter gets the base LR: no need to know the architecture
    embeddings, blocks = parts or encoder_parts(model)
    depth = {id(p): 0 for p in embeddings.parameters()}
    for i, block in enumerate(blocks, start=1):
        depth.update({id(p): i for p in block.parameters()})
    return depth, len(blocks) + 1


def param_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_lr_decay: float = 1.0,
    parts: tuple[nn.Module, list[nn.Module]] | None = None,
) -> list[dict]:
    """Trainable parameters grouped by (depth, decay): LR = ``lr * decay ** (top - depth)``. ``parts``: (the bottom
    module, the blocks bottom to top) when the model is not a BERT-like encoder (an image backbone).

    >>> groups = param_groups(model, 1e-4, 0.01, layer_lr_decay=0.9)  # doctest: +SKIP
    >>> {g["lr"] for g in groups}  # head at 1e-4, embeddings at 1e-4 * 0.9 ** (L + 1)  # doctest: +SKIP
    """
    depth_of, top = _depths(model, layer_lr_decay, parts)
    no_decay = _no_decay_params(model)
    grouped: dict[GroupKey, list[nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        key = GroupKey(depth_of.get(id(param), top), id(param) not in no_decay)
        grouped.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": learning_rate * layer_lr_decay ** (top - key.depth),
            "weight_decay": weight_decay if key.decay else 0.0,
            "depth": key.depth,
        }
        for key, params in sorted(grouped.items(), key=lambda kv: (kv[0].depth, kv[0].decay))
    ]


def warmup_then_linear_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """LR rises linearly over the first ``warmup_ratio`` of steps, then falls linearly to 0."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
