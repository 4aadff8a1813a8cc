"""What every command shares: the one-line refusal (``hpo: ...``, exit 2) and opening the registry the global
options name."""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from typing import NoReturn

from hpo.stores.registry import Registry, RegistryError, StudyRecord, url_problem


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"hpo: {message}", file=sys.stderr)
    sys.exit(code)


def open_registry(args: Namespace) -> Registry:
    root = os.path.realpath(args.storage_root)  # as the sweep resolved storage.root
    url = args.registry or f"sqlite:///{root}/registry.db"
    if problem := url_problem(url):
        fail(f"config error: --registry: {problem}")
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        fail(f"no study registry at {url}: run `hpo sweep` first, or pass --storage-root / --registry")
    return Registry.open(url)


def require(registry: Registry, name: str) -> StudyRecord:
    try:
        return registry.require(name)
    except RegistryError as err:
        fail(str(err))
