"""Study-level early stopping: time budget, target metric, plateau, and ``hpo stop``.

A Ray Tune ``Stopper`` whose ``stop_all`` ends the whole study; ``reason`` says why, for the
registry, the MLflow study run and the summary. Example::

    stopper = StudyStopper("val_accuracy", "max", target=0.9, patience=5, min_delta=0.002)
"""

from __future__ import annotations

import threading
import time

from ray.tune import Stopper


class StudyStopper(Stopper):
    def __init__(
        self,
        metric: str,
        mode: str,
        *,
        time_budget_s: float | None = None,
        elapsed_before_s: float = 0.0,
        target: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        finished_bests: list[float] = (),
    ) -> None:
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.time_budget_s, self.target = time_budget_s, target
        self.patience, self.min_delta = patience, min_delta
        self.finished_bests = list(finished_bests)  # each finished trial's best value, in finishing order
        self.deadline = time.monotonic() + time_budget_s - elapsed_before_s if time_budget_s else None
        self.user_stop = threading.Event()
        self.reason: str | None = None

    def __getstate__(self) -> dict:
        """Ray pickles its run config into tuner.pkl (hpo resumes from its own stores, never from that)."""
        return {k: v for k, v in self.__dict__.items() if k != "user_stop"}

    def __call__(self, trial_id: str, result: dict) -> bool:
        value = result.get(self.metric)
        if self.target is not None and value is not None and self.sign * (value - self.target) >= 0:
            self.reason = self.reason or f"target reached: {self.metric}={value:.4f} (target {self.target})"
        return False

    def trial_finished(self, best_value: float | None) -> None:
        if best_value is None:
            return
        self.finished_bests.append(best_value)
        if self.patience and len(self.finished_bests) > self.patience:
            before = max(self.sign * v for v in self.finished_bests[: -self.patience])
            now = max(self.sign * v for v in self.finished_bests)
            if now - before < self.min_delta:
                self.reason = self.reason or (
                    f"plateau: best {self.metric} improved by {now - before:.4g} < min_delta {self.min_delta} "
                    f"over the last {self.patience} finished trials"
                )

    def stop_all(self) -> bool:
        if self.user_stop.is_set():
            self.reason = self.reason or "stopped by user (hpo stop)"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = self.reason or f"time budget of {self.time_budget_s:.0f}s used up"
        return self.reason is not None
