"""Credentials never leave the process that was given them: URLs and configs as hpo prints, logs, stores in
MLflow and keeps in the registry carry ``***`` where a password, a secret query option or a secret-named
setting was. A resume gets them back from what its user passes again (:func:`restore`).

Example::

    >>> redact_url("postgresql+psycopg://hpo:s3cret@db:5432/hpo")
    'postgresql+psycopg://hpo:***@db:5432/hpo'
    >>> redact_url("s3://AKID:SK@bucket/p?endpoint_override=h:9000&secret_key=SK")
    's3://***:***@bucket/p?endpoint_override=h:9000&secret_key=***'
    >>> restore("postgresql+psycopg://hpo:***@db/optuna", given=["postgresql+psycopg://hpo:s3cret@db/hpo"])
    'postgresql+psycopg://hpo:s3cret@db/optuna'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
_KEY_PAIR_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")
_SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|access_key|api_key|private_key", re.I)
_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<password>[^@/]*)@", re.I)


def redact_url(url: str) -> str:
    """``url`` with its password and the values of secret-named query options replaced by ``***``."""
    if "://" not in url:
        return url
    # A bucket URL's user is its access key ID: masked too. A database user name is not a secret (and lets a
    # resume match the URL its user passes again).
    key_pair = url.split("://", 1)[0].lower() in _KEY_PAIR_SCHEMES
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK if key_pair else m['user']}:{MASK}@", url)
    if "?" not in url:
        return url
    base, query = url.split("?", 1)
    pairs = parse_qsl(query, keep_blank_values=True)
    parts = [f"{k}={MASK}" if _SECRET_NAME.search(k) else f"{k}={v}" for k, v in pairs]
    return f"{base}?{'&'.join(parts)}"


def redact(value: Any, key: str = "") -> Any:
    """A config (nested dicts and lists, as ``OmegaConf.to_container`` gives) with every credential masked."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return MASK if value and _SECRET_NAME.search(key) else redact_url(value)
    return value


def restore(url: str, given: Iterable[str]) -> str:
    """A redacted URL with its password taken from a ``given`` URL (one its user passed) for the same user, host
    and port; unchanged when none matches."""
    if not (found := _USERINFO.match(url)) or found["password"] != MASK:
        return url
    target = urlsplit(url)
    for candidate in given:
        other = urlsplit(candidate)
        user = other.username if target.username == MASK else target.username
        same = (other.scheme, other.username, other.hostname, other.port) == (target.scheme, user, target.hostname,
                                                                             target.port)
        if other.password and same:
            return f"{found['scheme']}{user}:{other.password}@{url[found.end():]}"
    return url


def is_uri(location: str) -> bool:
    return "://" in location


def redacted(location: str) -> str:
    """``location`` fit for a message or a log: a URI without its credentials and options."""
    if not is_uri(location):
        return location
    parts = urlsplit(location)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query=""))
