"""An image classifier: a pretrained backbone (:mod:`trainers.images.backbones`) with a new head, saved as a folder of
``model.safetensors`` and ``config.json`` (backbone, labels, input size, normalization) that :func:`load` reads back.

Example::

    >>> model = ImageClassifier("mobilenet_v2", ("coat", "shirt"), pretrained=False)
    >>> model(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainers.images.backbones import BACKBONES, parts, replace_head

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ImageClassifier(nn.Module):
    """``forward(pixel_values) -> logits``; ``pixel_values`` normalized with :attr:`mean` and :attr:`std`."""

    def __init__(self, backbone: str, label_names: Sequence[str], *, dropout: float = 0.2,
                 image_size: int | None = None, pretrained: bool = True) -> None:
        super().__init__()
        spec = BACKBONES[backbone]
        self.backbone, self.label_names = backbone, tuple(label_names)
        self.image_size = image_size or spec.image_size
        self.mean, self.std, self.dropout = spec.mean, spec.std, dropout
        self.net = spec.build(pretrained)
        replace_head(self.net, len(label_names), dropout)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def parts(self) -> tuple[nn.Module, list[nn.Module]]:
        """(stem, blocks bottom to top)."""
        return parts(self.net)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] as the backbone expects them."""
        mean = torch.tensor(self.mean, device=images.device)[:, None, None]
        std = torch.tensor(self.std, device=images.device)[:, None, None]
        return (images - mean) / std

    def config(self) -> dict:
        return {"hpo_task": "image_classification", "backbone": self.backbone, "labels": list(self.label_names),
                "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "dropout": self.dropout}

    def save(self, folder: str | Path, weights: bool = True) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG).write_text(json.dumps(self.config(), indent=1))
        if weights:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS))
        return folder


def load(folder: str | Path, weights: str | Path | None = None) -> ImageClassifier:
    """The classifier saved in ``folder`` (``weights``: another weights file, a checkpoint's latest)."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    model = ImageClassifier(config["backbone"], config["labels"], dropout=config["dropout"],
                            image_size=config["image_size"], pretrained=False)
    model.load_state_dict(load_file(str(weights or folder / WEIGHTS)), strict=True)
    return model


def is_image_model(folder: str | Path) -> bool:
    path = Path(folder) / CONFIG
    return path.is_file() and json.loads(path.read_text()).get("hpo_task") == "image_classification"
