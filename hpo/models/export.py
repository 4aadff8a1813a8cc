"""The study's best model, usable outside hpo and MLflow: its folder with a model card, and an ONNX file checked
against PyTorch by the model's task (:meth:`trainers.tasks.base.Task.export_onnx`). Example::

    folder = export_folder(best, "out/sst2_minilm", card)     # the model's folder, README.md model card
    gap = export_checked_onnx(task, folder, folder / "model.onnx", inputs)   # outputs within 1e-4 of PyTorch's
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainers.tasks import Task

ONNX_TOLERANCE = 1e-4


class ExportMismatch(RuntimeError):
    """The ONNX model's outputs differ from PyTorch's by more than :data:`ONNX_TOLERANCE`."""


def export_folder(best: Path, out: Path, card: str) -> Path:
    """Copies the best model's folder (weights, the task's preprocessing files, config with labels) to ``out`` and
    writes ``card`` as its ``README.md``."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose an empty or new folder")
    shutil.copytree(best, out, dirs_exist_ok=True)
    (out / "README.md").write_text(card)
    return out


def export_checked_onnx(task: Task, folder: Path, target: Path, inputs: Sequence[Any]) -> float:
    """Writes ``folder``'s model as ONNX at ``target`` and returns the largest gap to PyTorch's outputs on ``inputs``
    (raising :class:`ExportMismatch` above the tolerance: the file is not to be trusted then)."""
    task.export_onnx(folder, target)
    gap = task.onnx_gap(folder, target, inputs)
    if gap > ONNX_TOLERANCE:
        raise ExportMismatch(f"ONNX outputs differ from PyTorch's by {gap:.2e} (> {ONNX_TOLERANCE}) on {len(inputs)} "
                             "validation rows; the ONNX file is not to be trusted")
    return gap
