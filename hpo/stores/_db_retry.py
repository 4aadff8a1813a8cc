"""Riding out a database that goes away for a moment (a PostgreSQL restart or failover, SQLite busy): a
registry call that fails to reach its database is tried again with backoff for up to ``RETRY_FOR_S``, on a fresh
connection (the engine pings pooled ones before use), instead of failing the study at the first lost connection.
The first failure of a call is logged (a warning on stderr unless the application configures logging): an
operator sees that the database went away and was ridden out, not only that nothing failed.

Example::

    >>> calls = []
    >>> @retrying
    ... def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise OperationalError("select 1", {}, ConnectionError("server closed the connection"))
    ...     return "ok"
    >>> flaky(), len(calls)
    ('ok', 3)
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

RETRY_FOR_S = 60.0
_log = logging.getLogger(__name__)
_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError)
T = TypeVar("T")


def retrying(call: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(call)
    def again(*args, **kwargs) -> T:
        deadline, wait, said = time.monotonic() + RETRY_FOR_S, 0.05, False
        while True:
            try:
                return call(*args, **kwargs)
            except _TRANSIENT as err:
                if time.monotonic() + wait > deadline:
                    raise
                if not said:  # once per call
                    said = True
                    _log.warning("registry: its database did not answer (%s); trying again for up to %.0f s",
                                 type(getattr(err, "orig", None) or err).__name__, RETRY_FOR_S)
                time.sleep(wait)
                wait = min(wait * 2, 5.0)
    return again
