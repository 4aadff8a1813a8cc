"""Why a study ends early: one stop signal (``hpo stop``, Ctrl-C) and the study's stop rules.

Both are plain objects handed to whoever needs them through constructors: the driver lease sets the
signal when the registry says STOPPING, the Ray stopper asks :meth:`StudyStop.should_stop`, the ledger
asks :attr:`StopSignal.is_set` to tell an interrupted trial from a pruned one. Example::

    >>> from trainers.objective import Objective
    >>> rules = StudyStop(Objective("val_accuracy", "max"), StopSignal(), target=0.9)
    >>> rules.result(0.85), rules.should_stop()
    (None, False)
    >>> rules.result(0.91); rules.should_stop(), rules.reason
    (True, 'target reached: val_accuracy=0.9100 (target 0.9)')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from trainers.objective import Objective


class StopSignal:
    """Set once, from any thread, to end the study gracefully with its running trials kept resumable."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()


class StudyStop:
    """The study-level stop rules: time and epoch budgets (over resumes), target value, plateau over finished
    trials, and the stop signal. The first rule that fires is the ``reason``, unless the stop signal is set.
    The epoch budget is compute counted the way the search-quality benchmark counts it: every epoch any
    trial trains, pruned or not."""

    def __init__(
        self,
        objective: Objective,
        signal: StopSignal,
        *,
        time_budget_s: float | None = None,
        elapsed_before_s: float = 0.0,
        epoch_budget: int | None = None,
        epochs_before: int = 0,
        target: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        finished_bests: Iterable[float] = (),
    ) -> None:
        self.objective, self.signal = objective, signal
        self.time_budget_s, self.target = time_budget_s, target
        self.epoch_budget, self.epochs = epoch_budget, epochs_before
        self.patience, self.min_delta = patience, min_delta
        self.finished_bests = list(finished_bests)  # each finished trial's best value, in finishing order
        self.deadline = time.monotonic() + time_budget_s - elapsed_before_s if time_budget_s else None
        self.reason: str | None = None

    def result(self, value: float | None) -> None:
        """One epoch's objective value from any trial."""
        self.epochs += 1
        if self.epoch_budget is not None and self.epochs >= self.epoch_budget:
            self._fire(f"epoch budget of {self.epoch_budget} used up")
        if self.target is not None and value is not None and self.objective.reached(value, self.target):
            self._fire(f"target reached: {self.objective.metric}={value:.4f} (target {self.target})")

    def trial_finished(self, best_value: float | None) -> None:
        """A trial ended (completed or pruned) with this best value."""
        if best_value is None:
            return
        self.finished_bests.append(best_value)
        if self.patience and len(self.finished_bests) > self.patience:
            before = self.objective.best(self.finished_bests[: -self.patience])
            best = self.objective.best(self.finished_bests)
            assert before is not None and best is not None, "finished_bests holds values only"
            gain = self.objective.improvement(best, before)
            if gain < self.min_delta:
                self._fire(f"plateau: best {self.objective.metric} improved by {gain:.4g} < min_delta "
                           f"{self.min_delta} over the last {self.patience} finished trials")

    def should_stop(self) -> bool:
        if self.signal.is_set:  # the study ends STOPPED (resumable) whatever else fired: say so
            self.reason = self.signal.reason
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self._fire(f"time budget of {self.time_budget_s:.0f}s used up")
        return self.reason is not None

    def _fire(self, reason: str) -> None:
        self.reason = self.reason or reason
