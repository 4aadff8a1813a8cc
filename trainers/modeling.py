"""Loading a pretrained encoder with a new task head, pooling, and partial freezing.

A sentence-embedding checkpoint such as all-MiniLM-L6-v2 was trained with mean pooling: its
CLS pooler is untrained, so with all blocks frozen a CLS head stays at chance (0.51 on SST-2
dev, measured). ``pooling="mean"`` classifies the attention-masked mean of the last hidden
states instead; ``"cls"`` uses the model's own head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from trainers.config import POOLINGS

# Dropout settings across BERT-like configs (BERT/RoBERTa/ELECTRA/DeBERTa, DistilBERT).
_DROPOUT_KEYS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
    "dropout", "attention_dropout", "seq_classif_dropout",
)
REGRESSION_OUTPUT = "score"  # the one output of a regression head, as the model's config names it
# Where BERT-like models keep their stack of encoder blocks, relative to ``model.base_model``.
_BLOCK_PATHS = ("encoder.layer", "transformer.layer")


class UnsupportedArchitecture(ValueError):
    """The model has no BERT-like embeddings + stack of encoder blocks to freeze or decay."""


class TextClassifier(nn.Module):
    """A sequence classifier: ``forward(input_ids, attention_mask) -> logits``."""

    def __init__(self, model: PreTrainedModel, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model: PreTrainedModel = model
        self.pooling = pooling
        self.model.config.hpo_pooling = pooling
        pooler = getattr(model.base_model, "pooler", None)
        if pooling == "mean" and pooler is not None:
            pooler.requires_grad_(False)  # unused: the head reads the mean instead

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (one per class), or one score per row for regression; ``token_type_ids`` for sentence pairs."""
        types = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.pooling == "cls":
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **types).logits
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, **types).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        head: nn.Module = self.model.get_submodule("classifier")
        if isinstance(head, nn.Linear):
            dropout = getattr(self.model, "dropout", nn.Identity())
            return head(dropout(pooled))
        return head(pooled[:, None, :])  # RoBERTa/ELECTRA-style heads read position 0 of a sequence

    def save(self, directory: str | Path, tokenizer=None) -> Path:
        """Writes a ``from_pretrained``-loadable folder (the pooling is kept in ``config.json``)."""

        hf_logging.disable_progress_bar()
        directory = Path(directory)
        self.model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained_folder(cls, directory: str | Path) -> TextClassifier:
        """Reloads a full folder written by :meth:`save` with the pooling it was trained with."""

        model = AutoModelForSequenceClassification.from_pretrained(str(directory))
        return cls(model, getattr(model.config, "hpo_pooling", "cls"))


def load_classifier(
    name_or_path: str | Path, label_names: Sequence[str], *, pooling: str = "cls", dropout: float | None = None,
    text_pair: bool = False,
) -> TextClassifier:
    """The pretrained encoder with a new head sized to ``label_names`` (no names: one output, a regression head);
    dropout set throughout. ``text_pair`` is recorded in the config, so whoever loads the model feeds it pairs."""

    names = list(label_names) or [REGRESSION_OUTPUT]
    config = AutoConfig.from_pretrained(
        str(name_or_path),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        problem_type="regression" if not label_names else "single_label_classification",
    )
    config.hpo_text_pair = text_pair
    if dropout is not None:
        for key in _DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, dropout)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), config=config)
    finally:
        hf_logging.set_verbosity(verbosity)
    return TextClassifier(model, pooling)


def encoder_parts(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """(embeddings, encoder blocks bottom to top) of a BERT-like model."""
    base = model.base_model
    embeddings = getattr(base, "embeddings", None)
    for path in _BLOCK_PATHS:
        node: object = base
        for attr in path.split("."):
            node = getattr(node, attr, None)
        if embeddings is not None and isinstance(node, nn.ModuleList):
            return embeddings, list(node)
    raise UnsupportedArchitecture(
        f"{type(model).__name__}: no BERT-like embeddings and encoder blocks "
        f"(looked for base_model.embeddings and base_model.{{{', '.join(_BLOCK_PATHS)}}}); "
        "freezing and layer-wise LR decay support BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa and MiniLM"
    )


def num_encoder_blocks(model: nn.Module) -> int:
    return len(encoder_parts(model)[1])


def blocks_of_pretrained(name_or_config: str | PretrainedConfig) -> int:
    """The encoder blocks of a pretrained model (a folder, a hub name, or its config), read from its config: no
    weights are loaded or allocated."""
    config = (name_or_config if isinstance(name_or_config, PretrainedConfig)
              else AutoConfig.from_pretrained(str(name_or_config)))
    with torch.device("meta"):  # the architecture, without allocating weights
        model = AutoModelForSequenceClassification.from_config(config)
    return num_encoder_blocks(model)


# Models whose position ids start after the padding index (fairseq's layout): max_position_embeddings - 2 usable.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "xlm-roberta-xl", "data2vec-text")


def max_input_length(config: PretrainedConfig) -> int | None:
    """The most tokens the model's absolute position embeddings take; None where positions are relative (no limit
    hpo can read from the config).

    >>> from transformers import BertConfig, RobertaConfig
    >>> max_input_length(BertConfig()), max_input_length(RobertaConfig(max_position_embeddings=514, pad_token_id=1))
    (512, 512)
    """
    positions = getattr(config, "max_position_embeddings", None)
    absolute = getattr(config, "position_embedding_type", "absolute") == "absolute"
    if not isinstance(positions, int) or positions <= 0 or not absolute or not getattr(config, "position_biased_input",
                                                                                        True):
        return None
    if config.model_type in _OFFSET_POSITIONS:
        return positions - (config.pad_token_id or 0) - 1
    return positions


def freeze(model: nn.Module, depth: int) -> None:
    """Freezes the embeddings and the first ``depth`` blocks; ``depth=0`` trains everything."""
    embeddings, blocks = encoder_parts(model)
    if not 0 <= depth <= len(blocks):
        raise ValueError(f"freeze_depth must be in 0..{len(blocks)} for this model, got {depth}")
    if depth > 0:
        embeddings.requires_grad_(False)
    for block in blocks[:depth]:
        block.requires_grad_(False)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
