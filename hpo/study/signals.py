"""SIGTERM and Ctrl-C as the graceful stop ``hpo stop`` is.

SIGTERM is what Kubernetes, Slurm preemption, ``docker stop`` and ``ray job stop`` send; Ctrl-C is SIGINT. Without
this, Ray's core worker answers SIGTERM by printing its stack and aborting (exit 134, the study recorded failed,
trials left RUNNING) and Ray Tune turns SIGINT into a KeyboardInterrupt from deep inside its loop. While a study
runs, the first signal requests the study's :class:`~hpo.study.stopping.StopSignal` (trials end at their latest
checkpoint, ``interrupted``; the study ``stopped``, resumable); a second one while stopping raises
:class:`StopNow`, which ends the study at once, still resumable. While the study's records are being closed (a few
seconds: :meth:`StopOnSignals.closing`) a second signal waits for them, a third one does not. The exit code is 128 +
the signal (143, 130).

Handlers are installed after ``ray.init`` (which installs its own) and only from the main thread, and the previous
ones are put back on exit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from hpo.study.stopping import StopSignal

HANDLED = (signal.SIGTERM, signal.SIGINT)
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"  # Ray Tune would replace our SIGINT handler inside fit()


class StopNow(BaseException):
    """A second signal while the study was stopping: end now (a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @staticmethod
    def within(error: BaseException) -> StopNow | None:
        """The StopNow that caused ``error``: raised inside Ray's compiled code (a ``ray.wait``), it comes out
        wrapped in a ``SystemError`` whose cause it is."""
        seen: BaseException | None = error
        while seen is not None and not isinstance(seen, StopNow):
            seen = seen.__cause__ or seen.__context__
        return seen


def describe(signum: int) -> str:
    """``SIGTERM``, or ``Ctrl-C (SIGINT)``: how the study's stop reason names it."""
    name = signal.Signals(signum).name
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else name


class StopOnSignals:
    """While entered, SIGTERM and SIGINT stop the study gracefully (first) or at once (second)."""

    def __init__(self, stop: StopSignal, log: Callable[[str], None]) -> None:
        self.stop, self.log = stop, log
        self.received: int | None = None
        self._count, self._closing = 0, False
        self._previous: dict[int, object] = {}
        self._tune_env: str | None = None

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._tune_env = os.environ.get(TUNE_SIGINT_ENV)
        os.environ[TUNE_SIGINT_ENV] = "1"
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self._previous:
            if self._tune_env is None:
                os.environ.pop(TUNE_SIGINT_ENV, None)
            else:
                os.environ[TUNE_SIGINT_ENV] = self._tune_env

    @contextmanager
    def closing(self) -> Iterator[None]:
        """The study's records are being written: a second signal lets them finish (a third one does not)."""
        self._closing = True
        try:
            yield
        finally:
            self._closing = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._count += 1
        if self._count == 2 and self._closing:
            self.log(f"{describe(signum)}: recording how the study ended (seconds); send it again to skip that")
            return
        if self.received is not None:
            raise StopNow(signum)
        self.received = signum
        self.stop.request(f"{describe(signum)} received")
        self.log(f"{describe(signum)}: stopping; running trials end at their latest checkpoint (send it again to "
                 "stop at once, still resumable)")

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that stopped the study (the shell's convention); None when none did."""
        return None if self.received is None else 128 + self.received
