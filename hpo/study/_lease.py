"""One driver per study: this process claims the study in the registry, proves itself alive every
``heartbeat_s`` (and counts driver time toward the time budget), and turns ``hpo stop`` — the registry
saying STOPPING — into the study's :class:`~hpo.study.stopping.StopSignal`. Example::

    with DriverLease(registry, "sst2", spec.lease, signal, clock_start=time.time()):
        ...  # drive the study; another `hpo sweep/resume` of it is refused meanwhile
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hpo.config.spec import LeaseSpec
from hpo.states import StudyStatus
from hpo.stores.registry import Registry
from hpo.study.stopping import StopSignal

USER_STOP = "stopped by user (hpo stop)"


class DriverLease:
    def __init__(self, registry: Registry, name: str, lease: LeaseSpec, signal: StopSignal, clock_start: float,
                 log: Callable[[str], None] = print) -> None:
        self.registry, self.name, self.lease, self.signal = registry, name, lease, signal
        self.clock_start, self.log = clock_start, log
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="hpo-heartbeat")

    def __enter__(self) -> DriverLease:
        self.registry.claim(self.name, self.lease.stale_after_s)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def elapsed_s(self) -> float:
        """Driver time over every attempt at this study."""
        return time.time() - self.clock_start

    def _beat(self) -> None:
        while not self._done.wait(self.lease.heartbeat_s):
            if self.registry.heartbeat(self.name, self.elapsed_s()) == StudyStatus.STOPPING and not self.signal.is_set:
                self.signal.request(USER_STOP)
                self.log("stop requested: ending running trials at their checkpoints")
