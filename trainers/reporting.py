"""The narrow interface through which a training run tells the outside world how it goes."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from trainers.checkpoint import BEST_DIR, full_model


class Reporter(Protocol):
    """Receives one call per epoch with that epoch's checkpoint folder.

    The folder (:mod:`trainers.checkpoint`) holds the latest trainable weights plus ``trainer_state.pt``
    (enough to resume exactly) and ``best/``, the best model so far, both compact: they refer to the base
    model for the frozen layers (``load_model`` loads either; ``checkpoint.full_model``
    writes a ``from_pretrained``-loadable folder). It is only valid during the call: a reporter that wants to
    keep it copies it. ``metrics["improved"]`` is 1.0 when this epoch is the new best.
    """

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None: ...


class ConsoleReporter:
    """Prints each epoch's metrics and keeps the best model as a full Hugging Face folder when ``keep_dir`` is
    given."""

    def __init__(self, keep_dir: str | Path | None = None) -> None:
        self.keep_dir = Path(keep_dir) if keep_dir else None
        self.history: list[dict[str, float]] = []

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append(dict(metrics))
        print("  ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
        if checkpoint_dir and self.keep_dir and metrics.get("improved"):
            shutil.rmtree(self.keep_dir, ignore_errors=True)
            full_model(checkpoint_dir / BEST_DIR, self.keep_dir)
