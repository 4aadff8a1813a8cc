"""LoRA (Hu et al. 2021, "Low-Rank Adaptation of Large Language Models") as a fine-tuning method, through peft.

The encoder stays frozen; each attention query and value projection gains a trainable low-rank update
``(alpha / rank) * B @ A``, and the task head trains as usual. peft's adapters are injected into the model in place
(``peft.inject_adapter_in_model``), not wrapped in a ``PeftModel``: the classifier keeps its own forward, pooling,
freezing and layer-wise LR code, and a compact checkpoint (:mod:`trainers.compact`) holds only the adapters and the
head. The adapter settings travel in the model's config (``hpo_lora``), so a checkpoint reloads with the same
adapters, and :func:`merge` folds them into the weights wherever a model leaves the study (a plain Hugging Face
folder with no peft needed to load it). Example (the tiny BERT the tests build)::

    from trainers.modeling import load_classifier
    classifier = load_classifier("/tmp/tiny-bert", ["neg", "pos"])
    add_lora(classifier, rank=8, alpha=16)   # adapters + head trainable, the rest frozen
    merge(classifier)                        # the adapters folded into the query/value weights
"""

from __future__ import annotations

from torch import nn

from trainers.modeling import TextClassifier

CONFIG_KEY = "hpo_lora"  # the adapter settings, in the model's config.json
# Models peft has no default for: BERT-like, DistilBERT, BART-like, and MPNet (its attention's q and v).
_FALLBACK_TARGETS = ("query", "value", "q_lin", "v_lin", "q_proj", "v_proj", "q", "v")


def add_lora(classifier: TextClassifier, rank: int, alpha: float, dropout: float = 0.0) -> None:
    """Adds adapters (once: a reloaded checkpoint has them already) and leaves only them and the head trainable."""
    from peft import LoraConfig, inject_adapter_in_model  # lazy: peft takes seconds to import (LoRA only)

    model = classifier.model
    settings = getattr(model.config, CONFIG_KEY, None)
    if settings is None:
        settings = {"r": int(rank), "lora_alpha": float(alpha), "lora_dropout": float(dropout),
                    "target_modules": _targets(model)}
        inject_adapter_in_model(LoraConfig(**settings), model)
        setattr(model.config, CONFIG_KEY, settings)
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
    _head(model).requires_grad_(True)
    pooler = getattr(model.base_model, "pooler", None)
    if classifier.pooling == "cls" and pooler is not None:
        pooler.requires_grad_(True)  # the CLS head reads the pooler: it is part of the head here


def restore_adapters(model: nn.Module) -> None:
    """Re-injects the adapters a config names (its weights are loaded afterwards), before a checkpoint loads."""
    from peft import LoraConfig, inject_adapter_in_model  # lazy: peft takes seconds to import (LoRA only)

    if (settings := getattr(model.config, CONFIG_KEY, None)) is not None:
        inject_adapter_in_model(LoraConfig(**settings), model)


def merge(classifier: TextClassifier) -> None:
    """Folds every adapter into its base weights and puts the plain layers back: a model any loader reads."""
    from peft.tuners.lora import LoraLayer  # lazy: peft takes seconds to import (LoRA only)

    model = classifier.model
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, module.get_base_layer())
    if hasattr(model.config, CONFIG_KEY):
        delattr(model.config, CONFIG_KEY)


def _targets(model: nn.Module) -> list[str]:
    from peft import utils  # lazy: peft takes seconds to import (LoRA only)

    defaults = utils.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in defaults:
        return list(defaults[model_type])
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in _FALLBACK_TARGETS if t in present]
    if not targets:
        raise ValueError(f"{type(model).__name__}: no attention projection to adapt (looked for {_FALLBACK_TARGETS})")
    return targets


def _head(model: nn.Module) -> nn.Module:
    for attribute in ("classifier", "score"):
        if (head := getattr(model, attribute, None)) is not None:
            return head
    raise ValueError(f"{type(model).__name__}: no classification head (classifier or score)")
