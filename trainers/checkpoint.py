"""The layout of a trainer checkpoint, in one place: what :func:`trainers.fine_tune` writes each epoch and
what anyone reading a checkpoint (a resumed run, the orchestrator, an export) may rely on.

A checkpoint folder holds the latest weights and tokenizer (``from_pretrained``-loadable), ``STATE_FILE``
(optimizer, LR schedule, RNG: enough to resume exactly), ``SUMMARY_FILE`` (the epoch and its metrics, small
JSON for readers that must not load torch state) and ``BEST_DIR/``, the best model so far. Example::

    >>> is_complete({"config.json", STATE_FILE, SUMMARY_FILE, BEST_DIR})
    True
    >>> parse_summary('{"epoch": 2, "metrics": {"val_accuracy": 0.8}}')["epoch"]
    2
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "trainer_state.json"
BEST_DIR = "best"
_WRITTEN_LAST = {STATE_FILE, SUMMARY_FILE, BEST_DIR}  # present once the folder is fully written


def is_complete(names: set[str]) -> bool:
    """Whether a folder with these entries is a whole checkpoint (a crash mid-write leaves some out)."""
    return _WRITTEN_LAST <= set(names)


def parse_summary(text: str | bytes) -> dict[str, Any]:
    """``{"epoch": int, "metrics": {...}}`` from the contents of ``SUMMARY_FILE``."""
    return json.loads(text)


def read_summary(checkpoint: str | Path) -> dict[str, Any]:
    return parse_summary((Path(checkpoint) / SUMMARY_FILE).read_text())


def best_model(checkpoint: str) -> str:
    """Where the best model so far lives inside ``checkpoint`` (a local path or a storage path)."""
    return f"{checkpoint.rstrip('/')}/{BEST_DIR}"


def save(directory: Path, classifier, tokenizer, optimizer, scheduler, state: dict, best_dir: Path,
         metrics: dict[str, float]) -> Path:
    """Writes a checkpoint into ``directory``: weights, resume state, summary, and ``best/`` (hard-linked
    from ``best_dir``, not copied)."""
    classifier.save(directory, tokenizer)
    torch.save(
        {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "torch_rng": torch.get_rng_state()},
        directory / STATE_FILE,
    )
    shutil.copytree(best_dir, directory / BEST_DIR, copy_function=_link_or_copy)
    (directory / SUMMARY_FILE).write_text(json.dumps({"epoch": state["epoch"], "metrics": metrics}))
    return directory


def restore(checkpoint: Path, optimizer, scheduler, best_dir: Path) -> dict:
    """Loads the optimizer, schedule and RNG from ``checkpoint``, copies its ``best/`` to ``best_dir``, and
    returns the loop's own state (epoch, best metrics, patience count, micro-batch sizes)."""
    # weights_only: tensors and plain containers only, so a checkpoint from a shared bucket cannot run code.
    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    torch.set_rng_state(state.pop("torch_rng"))
    shutil.copytree(checkpoint / BEST_DIR, best_dir)
    return state


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
