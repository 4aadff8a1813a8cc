"""Can the study's services be reached? Asked before anything is recorded or started, so an unreachable
database, tracking server or Ray head (or an unwritable storage root) is one line naming the key and the fix,
in seconds, not a stack trace after the cluster started. Messages never show credentials (:func:`redacted`).

Example::

    >>> ray_address_of("10.0.0.5:6379"), ray_address_of("auto"), ray_address_of(None)
    (('10.0.0.5', 6379), None, None)
"""

from __future__ import annotations

import base64
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hpo.config.spec import ClusterSpec, StorageSpec
from hpo.errors import ConfigError
from hpo.secrets import redacted
from hpo.stores.registry import probe, url_problem

TIMEOUT_S = 5.0
USER_ENV, PASSWORD_ENV, TOKEN_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"


def check_services(storage: StorageSpec, cluster: ClusterSpec) -> None:
    """Raises :class:`ConfigError` for the first service that cannot be used."""
    services = (("registry.url", storage.registry_url), ("storage.optuna_url", storage.optuna_url),
                ("tracking.uri", storage.tracking_uri))
    for key, url in services[:2]:  # before anything is written, even the storage root
        if problem := url_problem(url):
            raise ConfigError(key, problem)
    _writable(storage.root)
    for key, url in services:
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
    """The tracking server answers at the URL's host and port (``/health``), and takes the credentials MLflow's
    client will send (an authenticated read): in the URL (``http://USER:PASSWORD@HOST:PORT``), else
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``, as MLflow reads them."""
    base = redacted(url).rstrip("/")  # urllib would read USER:PASSWORD@HOST as the host
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=TIMEOUT_S):
            pass
    except OSError as err:
        reason = getattr(err, "reason", None) or err
        raise ConfigError(key, f"cannot reach the MLflow server at {base} ({reason}); start it, fix the "
                               "URL, or leave tracking.uri unset for a local store") from None
    user, headers = _credentials(url)
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code not in (401, 403):
            return  # answering, and not about credentials: MLflow's client reports anything else itself
        who = f"user {user!r}" if user else "a request without credentials"
        raise ConfigError(key, f"the MLflow server at {base} refused {who} ({err.code} {err.reason}); "
                               "give a user and password it knows: http://USER:PASSWORD@HOST:PORT in tracking.uri, "
                               f"or {USER_ENV} and {PASSWORD_ENV} in the environment") from None
    except OSError as err:
        raise ConfigError(key, f"the MLflow server at {base} did not answer ({err}); check the server") from None


def _credentials(url: str) -> tuple[str | None, dict[str, str]]:
    """(the user, the Authorization header) MLflow's client sends (:mod:`mlflow.utils.rest_utils`): basic auth from
    the URL, else from the environment, else a bearer token."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else os.environ.get(USER_ENV)
    password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV)
    if user and password:
        return user, {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    if token := os.environ.get(TOKEN_ENV):
        return None, {"Authorization": f"Bearer {token}"}
    return user, {}


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
