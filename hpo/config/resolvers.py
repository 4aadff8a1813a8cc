"""OmegaConf resolvers used by ``conf/``: where the project, packaged models and data files live."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR_ENV = "HPO_CONFIG_DIR"  # a launched job's copy of conf/, relative to the folder it starts in
CONFIG_DIR = Path(os.environ.get(CONFIG_DIR_ENV) or PROJECT_ROOT / "conf").resolve()


def package_model(package: str) -> str:
    """The model folder shipped inside a Python package exposing ``get_model_path()``."""
    return str(importlib.import_module(package).get_model_path())


def first_existing(*paths: str) -> str:
    """The first of ``paths`` that is a file (``train.csv`` before ``train.csv.gz``), else the first one,
    so a missing file is reported under the name a user would expect."""
    return next((p for p in paths if Path(p).expanduser().is_file()), paths[0])


def register() -> None:
    OmegaConf.register_new_resolver("hpo.project_root", lambda: str(PROJECT_ROOT), replace=True)
    OmegaConf.register_new_resolver("hpo.package_model", package_model, replace=True)
    OmegaConf.register_new_resolver("hpo.first_existing", first_existing, replace=True)
