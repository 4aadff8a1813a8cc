"""Waiting for something another process does: poll until a condition holds, fail with what the caller says."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(probe: Callable[[], T | None], timeout_s: float, failure: Callable[[], str], every_s: float = 0.2) -> T:
    """``probe()`` every ``every_s`` until it returns something truthy (returned); after ``timeout_s``, fails with
    ``failure()`` (e.g. the driver's log). A probe may raise AssertionError itself (a driver that exited early)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s: {failure()}")
