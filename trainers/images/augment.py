"""Augmentation on batches of image tensors, for the training split only: a random resized crop (``aug_crop_scale``:
the smallest share of the image a crop keeps), a horizontal flip (``aug_flip``), a RandAugment-style magnitude
(``aug_magnitude`` 0-10: rotation, shear, brightness and contrast grow with it), and mixup (``mixup_alpha``), all as
search dimensions. One ``grid_sample`` per batch does the geometry.

Example::

    >>> batch = torch.rand(4, 3, 16, 16)
    >>> augment(batch, crop_scale=1.0, flip=False, magnitude=0.0, generator=torch.Generator()).allclose(batch,
    ...                                                                                               atol=1e-5)
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, *, crop_scale: float, flip: bool, magnitude: float,
            generator: torch.Generator) -> torch.Tensor:
    """``images`` (float, [0, 1], [B, 3, H, W]) randomly cropped, flipped, rotated, sheared and re-lit."""
    rows = images.shape[0]
    uniform = lambda low, high: low + (high - low) * torch.rand(rows, generator=generator)  # noqa: E731
    if crop_scale >= 1.0 and not flip and magnitude <= 0:
        return images
    area = uniform(crop_scale, 1.0)
    aspect = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3))) if crop_scale < 1.0 else torch.ones(rows)
    sx, sy = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
    tx, ty = (1 - sx) * uniform(-1, 1), (1 - sy) * uniform(-1, 1)
    mirror = torch.where(torch.rand(rows, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(rows)
    angle = uniform(-1, 1) * math.radians(3.0 * magnitude)
    shear = uniform(-1, 1) * 0.03 * magnitude
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * mirror * cos, -sy * sin + shear, tx], -1),
                         torch.stack([sx * mirror * sin, sy * cos, ty], -1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid.to(images.device), mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    if magnitude > 0:
        brightness = 1 + uniform(-1, 1) * 0.05 * magnitude
        contrast = 1 + uniform(-1, 1) * 0.05 * magnitude
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast.to(out)[:, None, None, None] + mean) * brightness.to(out)[:, None, None, None]
    return out.clamp(0, 1)


def mixup(images: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mixed images, the permutation each row was mixed with, lambda): the loss is ``lam * loss(y) + (1 - lam) *
    loss(y[perm])`` (Zhang et al. 2018). ``alpha`` 0: no mixing."""
    permutation = torch.randperm(images.shape[0], generator=generator)
    if alpha <= 0:
        return images, permutation, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam * images + (1 - lam) * images[permutation.to(images.device)], permutation, lam
