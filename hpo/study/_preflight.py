"""Can the study's services be reached? Asked before anything is recorded or started, so an unreachable
database, tracking server or Ray head (or an unwritable storage root) is one line naming the key and the fix,
in seconds, not a stack trace after the cluster started. Messages never show credentials (:func:`redacted`).

Example::

    >>> ray_address_of("10.0.0.5:6379"), ray_address_of("auto"), ray_address_of(None)
    (('10.0.0.5', 6379), None, None)
"""

from __future__ import annotations

import socket
import tempfile
import urllib.request
from pathlib import Path

from hpo.config.spec import ClusterSpec, StorageSpec
from hpo.errors import ConfigError
from hpo.secrets import redacted
from hpo.stores.registry import probe

TIMEOUT_S = 5.0


def check_services(storage: StorageSpec, cluster: ClusterSpec) -> None:
    """Raises :class:`ConfigError` for the first service that cannot be used."""
    _writable(storage.root)
    for key, url in (("registry.url", storage.registry_url), ("storage.optuna_url", storage.optuna_url),
                     ("tracking.uri", storage.tracking_uri)):
        if url.startswith(("http://", "https://")):
            _http(key, url)
        elif not url.startswith("sqlite:"):
            _database(key, url)
    if (address := ray_address_of(cluster.address)) is not None:
        _tcp("cluster.address", *address, fix="start the head (`ray start --head`), fix the address, or run "
                                              "locally with cluster=local")


def ray_address_of(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` Ray address; None for a local Ray or ``auto`` (found by Ray itself)."""
    if not address or address in ("auto", "local") or ":" not in address:
        return None
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as err:
        raise ConfigError("storage.root", f"cannot write to {root} ({err.strerror or err}); choose a folder you "
                                          "can write (storage.root=... or HPO_STORAGE_ROOT)") from None


def _http(key: str, url: str) -> None:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=TIMEOUT_S):
            return
    except OSError as err:
        reason = getattr(err, "reason", None) or err
        raise ConfigError(key, f"cannot reach the MLflow server at {redacted(url)} ({reason}); start it, fix the "
                               "URL, or leave tracking.uri unset for a local store") from None


def _database(key: str, url: str) -> None:
    try:
        probe(url, TIMEOUT_S)
    except ConnectionError as err:
        raise ConfigError(key, f"cannot connect to {redacted(url)} ({err}); check the host, port, database and "
                               "credentials") from None


def _tcp(key: str, host: str, port: int, fix: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return
    except OSError as err:
        raise ConfigError(key, f"nothing answers at {host}:{port} ({err.strerror or err}); {fix}") from None
