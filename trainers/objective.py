"""Which value is better: the one place that knows a metric's direction.

Example::

    >>> objective = Objective("val_accuracy", "max")
    >>> objective.better(0.81, 0.80), objective.better(0.80, None)
    (True, True)
    >>> objective.best([0.7, 0.83, 0.8])
    0.83
    >>> Objective("val_loss", "min").best([0.4, 0.3, None])
    0.3
    >>> objective.direction
    'maximize'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Objective:
    """The metric a study optimizes and whether higher (``max``) or lower (``min``) is better."""

    metric: str
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is: ``sign * value`` is always "higher is better"."""
        return 1.0 if self.mode == "max" else -1.0

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """Optuna's name for the mode."""
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` strictly beats ``than`` (anything beats None)."""
        return than is None or self.sign * (value - than) > 0

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` is at least as good as ``target``."""
        return self.sign * (value - target) >= 0

    def improvement(self, new: float, old: float) -> float:
        """How much ``new`` beats ``old``, positive when it is better."""
        return self.sign * (new - old)

    def best(self, values: Iterable[float | None]) -> float | None:
        """The best of ``values``, skipping None; None when there is none."""
        present = [v for v in values if v is not None]
        return max(present, key=lambda v: self.sign * v) if present else None

    def ranked(self, items: Iterable, key) -> list:
        """``items`` best first by ``key(item)``; items whose key is None are left out."""
        scored = [i for i in items if key(i) is not None]
        return sorted(scored, key=lambda i: -self.sign * key(i))
