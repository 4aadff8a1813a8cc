"""Compact model folders: only what fine-tuning changed, plus a reference to the pretrained model.

A trial with ``freeze_depth=k`` leaves the embeddings and the first k blocks exactly as the pretrained model
has them; writing them again every epoch is most of a checkpoint's bytes (ray#24918). A compact folder holds
the trainable parameters (``WEIGHTS_FILE``, safetensors: tensors only, nothing that runs on load), the
classifier's ``config.json`` (labels, dropout, pooling) and ``BASE_FILE``: the base model's name or path and a
SHA-256 of the parameters taken from it, checked on load so a changed base is refused instead of silently
giving another model. A full Hugging Face folder (``materialize``) is written only where a model leaves the
study: MLflow, ``hpo export``. Example (the tiny BERT the tests build)::

    from trainers.tiny import build_tiny_bert
    from trainers.modeling import load_classifier, freeze
    base = build_tiny_bert("/tmp/tiny-bert")
    classifier = load_classifier(base, ["neg", "pos"], pooling="mean")
    freeze(classifier.model, 1)
    save(classifier, "/tmp/compact", BaseModel.of(classifier, base))  # blocks 2.. and the head only
    materialize("/tmp/compact", "/tmp/full")                          # from_pretrained-loadable again
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from trainers.lora import merge, restore_adapters
from trainers.modeling import TextClassifier

BASE_FILE = "base.json"
WEIGHTS_FILE = "delta.safetensors"
CONFIG_FILE = "config.json"


class BaseModelChanged(ValueError):
    """The base model a compact folder refers to no longer holds the parameters the folder was trained on."""


@dataclass(frozen=True)
class BaseModel:
    """What a compact folder leaves out: the pretrained model's location and a hash of the tensors taken from it."""

    name_or_path: str
    sha256: str
    frozen: tuple[str, ...]  # parameter names read from the base (not stored)

    @classmethod
    def of(cls, classifier: TextClassifier, name_or_path: str | Path) -> BaseModel:
        """The reference for ``classifier`` as frozen now: every parameter without a gradient comes from the base."""
        frozen = tuple(sorted(n for n, p in classifier.model.named_parameters() if not p.requires_grad))
        return cls(str(name_or_path), _digest(classifier.model, frozen), frozen)


def save(classifier: TextClassifier, directory: str | Path, base: BaseModel, *, weights: bool = True) -> Path:
    """Writes ``classifier``'s trainable parameters (unless ``weights=False``: the caller keeps them elsewhere),
    its config and the base reference into ``directory``."""

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classifier.config.to_json_file(directory / CONFIG_FILE)
    (directory / BASE_FILE).write_text(json.dumps(asdict(base)))
    if weights:
        frozen = set(base.frozen)
        tensors = {n: p.detach().cpu().contiguous() for n, p in classifier.model.named_parameters() if n not in frozen}
        save_file(tensors, directory / WEIGHTS_FILE)
    return directory


def is_compact(directory: str | Path) -> bool:
    return (Path(directory) / BASE_FILE).is_file()


def load(directory: str | Path, weights: str | Path | None = None) -> TextClassifier:
    """The classifier a compact folder describes: the base model with the folder's (or ``weights``') tensors.

    Raises :class:`BaseModelChanged` when the base's tensors are not the ones the folder was trained on."""

    directory = Path(directory)
    reference = json.loads((directory / BASE_FILE).read_text())
    base = BaseModel(reference["name_or_path"], reference["sha256"], tuple(reference["frozen"]))
    config = AutoConfig.from_pretrained(str(directory))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "newly initialized" warning: its weights are loaded next
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base.name_or_path, config=config)
    finally:
        hf_logging.set_verbosity(verbosity)
    restore_adapters(model)  # a LoRA checkpoint's adapters, before its tensors load (trainers.lora)
    if _digest(model, base.frozen) != base.sha256:
        raise BaseModelChanged(
            f"{directory}: the base model {base.name_or_path!r} is not the one this checkpoint was trained on "
            "(its parameters' SHA-256 differs); point model.name_or_path at the original weights")
    missing, unexpected = model.load_state_dict(load_file(Path(weights or directory / WEIGHTS_FILE)), strict=False)
    absent = sorted(set(missing) - set(base.frozen) - _buffers(model))
    if unexpected or absent:
        raise ValueError(f"{directory}: the stored tensors do not fit the base model "
                         f"(unexpected {sorted(unexpected)[:3]}, missing {absent[:3]})")
    return TextClassifier(model, getattr(config, "hpo_pooling", "cls"))


def materialize(directory: str | Path, destination: str | Path, weights: str | Path | None = None) -> Path:
    """A full ``from_pretrained``-loadable folder (weights and the base's tokenizer) from a compact one."""

    classifier = load(directory, weights)
    merge(classifier)  # LoRA adapters folded into the weights: the folder loads without peft
    base = json.loads((Path(directory) / BASE_FILE).read_text())["name_or_path"]
    return classifier.save(destination, AutoTokenizer.from_pretrained(base))


def _digest(model: nn.Module, names: tuple[str, ...]) -> str:
    """SHA-256 over the named parameters' names, shapes, dtypes and bytes, in ``names``' order."""
    params = dict(model.named_parameters())
    digest = hashlib.sha256()
    for name in names:
        tensor = params[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _buffers(model: nn.Module) -> set[str]:
    """Buffers (position ids and the like) are rebuilt by the model itself, never stored."""
    return {name for name, _ in model.named_buffers()}
