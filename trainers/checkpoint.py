"""The layout of a trainer checkpoint, in one place: what :func:`trainers.fine_tune` writes each epoch and
what anyone reading a checkpoint (a resumed run, the orchestrator, an export) may rely on.

A checkpoint folder is compact (:mod:`trainers.compact`): the latest trainable parameters, the classifier's
config and a reference to the base model; ``STATE_FILE`` (optimizer, LR schedule, RNG: enough to resume
exactly); ``SUMMARY_FILE`` (the epoch and its metrics, and every epoch's so far as ``history``: small JSON for
readers that must not load torch state)
and ``BEST_DIR/``, the best model so far, itself a compact folder. When the epoch is the best so far its
parameters are written once, in ``BEST_DIR/``, and the folder's own weights file is left out. What a trial
writes per epoch is then its trainable fraction (x3 or x4 with Adam's two moments), never the frozen layers.
Example::

    >>> is_complete({"config.json", STATE_FILE, SUMMARY_FILE, BEST_DIR})
    True
    >>> is_complete({"config.json", SUMMARY_FILE, BEST_DIR})  # torn: the resume state never arrived
    False
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

from trainers import compact
from trainers.images import model as image_model
from trainers.metrics import EVALUATION_FILE
from trainers.modeling import TextClassifier

STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "trainer_state.json"
BEST_DIR = "best"
_WRITTEN_LAST = {STATE_FILE, SUMMARY_FILE, BEST_DIR}  # present once the folder is fully written
FOLDS_DIR = "folds"  # a cross-validated trial's per-fold checkpoints (trainers.cv)
RESUME_STATE = (STATE_FILE, compact.WEIGHTS_FILE, FOLDS_DIR)  # what only resuming needs: dropped when a trial ends
RETIRED_FILE = "retired"  # written before the resume state of an ended trial is dropped (hpo.stores.retention)


def is_complete(names: set[str]) -> bool:
    """Whether a folder with these entries is a whole checkpoint (a crash mid-write leaves some out), or one
    whose ended trial no longer needs its resume state (its model stays readable)."""
    names = set(names)
    return _WRITTEN_LAST <= names or (RETIRED_FILE in names and {SUMMARY_FILE, BEST_DIR} <= names)


def parse_summary(text: str | bytes) -> dict[str, Any]:
    """``{"epoch": int, "metrics": {...}}`` from the contents of ``SUMMARY_FILE``."""
    return json.loads(text)


def read_summary(checkpoint: str | Path) -> dict[str, Any]:
    return parse_summary((Path(checkpoint) / SUMMARY_FILE).read_text())


def best_model(checkpoint: str) -> str:
    """Where the best model so far lives inside ``checkpoint`` (a local path or a storage path)."""
    return f"{checkpoint.rstrip('/')}/{BEST_DIR}"


def weights_of(folder: str | Path) -> Path:
    """The trainable parameters of a compact model or checkpoint folder: its own, or its ``best/``'s when the
    checkpoint's epoch was the best (written once, there)."""
    folder = Path(folder)
    own = folder / compact.WEIGHTS_FILE
    return own if own.is_file() else folder / BEST_DIR / compact.WEIGHTS_FILE


def image_weights_of(folder: str | Path) -> Path:
    """The latest weights of an image model's checkpoint or folder (its own, or its ``best/``'s)."""
    folder = Path(folder)
    for path in (folder / compact.WEIGHTS_FILE, folder / image_model.WEIGHTS):
        if path.is_file():
            return path
    return folder / BEST_DIR / image_model.WEIGHTS


def load_model(folder: str | Path) -> TextClassifier:
    """The text classifier in a checkpoint (its latest weights), its ``best/``, or a full Hugging Face folder."""
    if compact.is_compact(folder):
        return compact.load(folder, weights_of(folder))
    return TextClassifier.from_pretrained_folder(folder)


def full_model(folder: str | Path, destination: str | Path) -> Path:
    """``folder``'s model as a full folder (Hugging Face's with its tokenizer, or an image model's; a copy if it is
    one already), with its per-class evaluation when it has one."""
    if image_model.is_image_model(folder):
        image_model.load(folder, image_weights_of(folder)).save(destination)
        if (evaluation := Path(folder) / EVALUATION_FILE).is_file():
            shutil.copy2(evaluation, Path(destination) / EVALUATION_FILE)
        return Path(destination)
    if compact.is_compact(folder):
        full = compact.materialize(folder, destination, weights_of(folder))
        if (evaluation := Path(folder) / EVALUATION_FILE).is_file():
            shutil.copy2(evaluation, full / EVALUATION_FILE)
        return full
    shutil.copytree(folder, destination, ignore=shutil.ignore_patterns(*_WRITTEN_LAST))
    return Path(destination)


def save(directory: Path, classifier: TextClassifier, base: compact.BaseModel, optimizer, scheduler, state: dict,
         best_dir: Path, metrics: dict[str, float]) -> Path:
    """Writes a checkpoint into ``directory``: trainable weights (unless this epoch is the best, whose weights
    ``best_dir`` holds), resume state, summary, and ``best/`` (hard-linked from ``best_dir``, not copied)."""
    compact.save(classifier, directory, base, weights=not metrics.get("improved"))
    torch.save(
        {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "torch_rng": torch.get_rng_state()},
        directory / STATE_FILE,
    )
    shutil.copytree(best_dir, directory / BEST_DIR, copy_function=_link_or_copy)
    files = {p.relative_to(directory).as_posix(): p.stat().st_size for p in directory.rglob("*") if p.is_file()}
    (directory / SUMMARY_FILE).write_text(json.dumps({"epoch": state["epoch"], "metrics": metrics, "files": files,
                                                      "history": state.get("history", [])}))
    return directory


def is_whole(summary: dict[str, Any], sizes: dict[str, int]) -> bool:
    """Whether every file ``summary`` lists is in ``sizes`` (relative path -> bytes) at its size. Ray copies a
    checkpoint's files in no set order, so a full disk can leave any of them short, the summary whole; an ended
    trial's dropped resume state is the one allowed absence."""
    retired = RETIRED_FILE in sizes
    return all(sizes.get(name) == size for name, size in summary.get("files", {}).items()
               if not (retired and name.split("/")[0] in RESUME_STATE))


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
