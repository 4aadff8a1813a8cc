"""What a person watching a sweep sees: a live status in a terminal, plain lines in a log, or nothing.

The ledger tells a :class:`Progress` about every trial event; a :class:`Tally` (pure bookkeeping, no output)
keeps the counts, the best value and the epochs, and estimates the time left. Three views of the same events:

- :class:`PlainProgress`: one line per event, for CI logs and ``hpo launch --follow`` (stdout not a terminal);
- :class:`LiveProgress`: a ``rich`` status block that redraws in place (trials by state, best so far, epochs
  of the budget, elapsed and ETA, the running trials), with one line printed above it per finished trial;
- :class:`QuietProgress` (``--quiet``): nothing; the study's summary is still printed at the end.

Example::

    >>> from trainers.objective import Objective
    >>> tally = Tally(Objective("val_accuracy", "max"), total_trials=4, max_epochs=3)
    >>> tally.started(0, {"learning_rate": 3e-05}); tally.epoch(0, 1, 0.81); tally.epoch(0, 2, 0.84)
    >>> tally.ended(0, "pruned"); tally.counts["pruned"], tally.best, tally.epochs_used
    (1, (0.84, 0, {'learning_rate': 3e-05}), 2)
    >>> tally.epochs_left()  # 3 trials to go at the 2 epochs each finished trial took
    6
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hpo.reporting.summary import format_params
from trainers.objective import Objective

DISPLAYS = ("auto", "live", "plain", "quiet")
_ENDED = ("completed", "pruned", "stopped", "failed")  # "stopped": cut short by the study's budget or stop rule


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Tally:
    """Counts, best so far and epochs of one study, including what earlier attempts recorded."""

    def __init__(self, objective: Objective, total_trials: int, max_epochs: int, epoch_budget: int | None = None,
                 time_budget_s: float | None = None, clock_start: float | None = None) -> None:
        self.objective, self.total_trials, self.max_epochs = objective, total_trials, max_epochs
        self.epoch_budget, self.time_budget_s = epoch_budget, time_budget_s
        self.clock_start = time.time() if clock_start is None else clock_start
        self.counts = dict.fromkeys(_ENDED, 0)
        self.running: dict[int, tuple[int, float | None]] = {}  # trial -> (latest epoch, its value)
        self.params: dict[int, dict[str, Any]] = {}
        self.best: tuple[float, int, dict[str, Any]] | None = None  # (value, trial, params)
        self.epochs_used = 0
        self.finished_epochs = 0  # epochs of finished trials: what a trial costs on average
        self.lock = threading.Lock()  # the live view reads from its refresh thread

    def restore(self, number: int, state: str, epochs: int, best: float | None, params: dict[str, Any]) -> None:
        """A trial an earlier attempt recorded (a resumed study)."""
        self.params[number] = params
        self.epochs_used += epochs
        if state in _ENDED:
            self.counts[state] += 1
            self.finished_epochs += epochs
        self._offer(number, best)

    def started(self, number: int, params: dict[str, Any], after_epoch: int = 0) -> None:
        with self.lock:
            self.params[number] = params
            self.running[number] = (after_epoch, None)

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        with self.lock:
            self.running[number] = (epoch, value)
            self.epochs_used += 1
            self._offer(number, value)

    def ended(self, number: int, state: str) -> None:
        with self.lock:
            epochs, _ = self.running.pop(number, (0, None))
            if state in _ENDED:
                self.counts[state] += 1
                self.finished_epochs += epochs

    def _offer(self, number: int, value: float | None) -> None:
        if value is None:
            return
        # On a tie the lower trial number wins, as in the study's own ranking (Objective.ranked keeps trial order).
        tie = self.best is not None and value == self.best[0] and number < self.best[1]
        if tie or self.objective.better(value, self.best[0] if self.best else None):
            self.best = (value, number, self.params.get(number, {}))

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def elapsed_s(self) -> float:
        return time.time() - self.clock_start

    def epochs_left(self) -> int:
        """Epochs still to train: trials not yet started at what a finished trial took on average (max_epochs
        before any finished), plus what the running ones have left; capped by the epoch budget."""
        per_trial = self.finished_epochs / self.finished if self.finished else self.max_epochs
        waiting = max(0, self.total_trials - self.finished - len(self.running))
        left = round(waiting * per_trial + sum(max(0.0, per_trial - e) for e, _ in self.running.values()))
        if self.epoch_budget is not None:
            left = min(left, max(0, self.epoch_budget - self.epochs_used))
        return left

    def eta_s(self) -> float | None:
        """Seconds left at this attempt's pace so far; None before the first epoch. Capped by the time budget."""
        elapsed = self.elapsed_s()
        if self.epochs_used == 0 or elapsed <= 0:
            return None
        eta = self.epochs_left() * elapsed / self.epochs_used
        if self.time_budget_s is not None:
            eta = min(eta, max(0.0, self.time_budget_s - elapsed))
        return eta

    def status_line(self) -> str:
        """``3/8 trials (2 running, 1 completed, 2 pruned, 0 failed) · best 0.8463 (trial 2) · 9/24 epochs ...``"""
        budget = self.epoch_budget or self.total_trials * self.max_epochs
        best = "no result yet"
        if self.best:
            best = f"best {self.objective.metric} {self.best[0]:.4f} (trial {self.best[1]})"
        return (f"{self.finished}/{self.total_trials} trials ({len(self.running)} running, "
                + ", ".join(f"{self.counts[s]} {s}" for s in _ENDED if s != "stopped" or self.counts[s])
                + f") · {best} · "
                f"{self.epochs_used}/{budget} epochs · {_clock(self.elapsed_s())} elapsed, ETA {_clock(self.eta_s())}")


class PlainProgress:
    """One line per event, prefixed with the study's name: what logs and CI show."""

    def __init__(self, name: str, tally: Tally, write: Callable[[str], None] | None = None) -> None:
        self.name, self.tally = name, tally
        self.write = write or (lambda line: print(line, flush=True))

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def message(self, line: str) -> None:
        self.write(f"[{self.name}] {line}")

    def trial_started(self, number: int, params: dict[str, Any], resumed_after: int | None) -> None:
        self.tally.started(number, params, resumed_after or 0)
        verb = f"resumed after epoch {resumed_after}" if resumed_after else "started"
        self.message(f"trial {number} {verb}: {format_params(params)}")

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self.tally.epoch(number, epoch, value)
        shown = "nan" if value is None else f"{value:.4f}"
        self.message(f"trial {number} epoch {epoch}: {self.tally.objective.metric}={shown}")

    def trial_ended(self, number: int, state: str, reason: str | None, epochs: int, best: float | None) -> None:
        self.tally.ended(number, state)
        self.message(self._ended_line(number, state, reason, epochs, best) + f"  [{self.tally.status_line()}]")

    def _ended_line(self, number: int, state: str, reason: str | None, epochs: int, best: float | None) -> str:
        why = f" ({reason})" if reason else ""
        value = f", best {self.tally.objective.metric}={best:.4f}" if best is not None else ""
        params = format_params(self.tally.params.get(number, {}))
        return f"trial {number} {state}{why} after {epochs} epoch(s){value}: {params}"


class QuietProgress(PlainProgress):
    """``--quiet``: keeps the tally, prints nothing."""

    def __init__(self, name: str, tally: Tally) -> None:
        super().__init__(name, tally, write=lambda line: None)


class LiveProgress(PlainProgress):
    """A status block redrawn in place (``rich.live``); finished trials and messages scroll above it."""

    _MARKS = {"completed": "[green]✓[/]", "pruned": "[yellow]✂[/]", "stopped": "[blue]■[/]", "failed": "[red]✗[/]",
              "interrupted": "[magenta]⏸[/]"}

    def __init__(self, name: str, tally: Tally, console=None) -> None:
        self.console = console or Console()
        super().__init__(name, tally, write=lambda line: self.console.print(line, markup=False, highlight=False))
        # redirect: prints from elsewhere in the driver (Ray's forwarded worker output) scroll above the block
        self.live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4,
                         redirect_stdout=True, redirect_stderr=True, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self.tally.epoch(number, epoch, value)  # shown in the block, not as a line

    def trial_started(self, number: int, params: dict[str, Any], resumed_after: int | None) -> None:
        self.tally.started(number, params, resumed_after or 0)

    def trial_ended(self, number: int, state: str, reason: str | None, epochs: int, best: float | None) -> None:
        self.tally.ended(number, state)
        mark = self._MARKS.get(state, "·")
        self.console.print(f"{mark} " + self._ended_line(number, state, reason, epochs, best).replace("[", r"\["),
                           highlight=False)

    def _counts_markup(self, running: int) -> str:
        c = self.tally.counts
        stopped = f"[blue]{c['stopped']} stopped[/] · " if c["stopped"] else ""
        return (f"[cyan]{running} running[/] · [green]{c['completed']} completed[/] · "
                f"[yellow]{c['pruned']} pruned[/] · {stopped}[red]{c['failed']} failed[/]")

    def _render(self):
        t = self.tally
        with t.lock:
            running = sorted(t.running.items())
            head = Table.grid(padding=(0, 1))
            head.add_row(Text(self.name, style="bold"),
                         ProgressBar(total=max(1, t.total_trials), completed=t.finished, width=30),
                         Text(f"{t.finished}/{t.total_trials} trials"),
                         Text.from_markup(self._counts_markup(len(running))))
            lines: list[RenderableType] = [head]
            if t.best:
                value, number, params = t.best
                lines.append(Text.from_markup(f"best {t.objective.metric} [bold green]{value:.4f}[/] (trial {number}) ")
                             + Text(format_params(params), style="dim"))
            budget = t.epoch_budget or t.total_trials * t.max_epochs
            lines.append(Text(f"epochs {t.epochs_used}/{budget} · elapsed {_clock(t.elapsed_s())} · "
                              f"ETA {_clock(t.eta_s())}"))
            for number, (epoch, latest) in running:
                shown = f" {t.objective.metric}={latest:.4f}" if latest is not None else ""
                lines.append(Text(f"  ● trial {number}: epoch {epoch}/{t.max_epochs}{shown}", style="cyan"))
        return Group(*lines)


def make_progress(display: str, name: str, tally: Tally) -> PlainProgress:
    """``auto``: live when stdout is a terminal, plain lines otherwise; or ``live``, ``plain``, ``quiet``."""
    if display not in DISPLAYS:
        raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")
    if display == "auto":
        display = "live" if sys.stdout.isatty() else "plain"
    return {"live": LiveProgress, "plain": PlainProgress, "quiet": QuietProgress}[display](name, tally)
