"""A registered model version's URI, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, read in one place.

The config checks a ``distill.teacher``, the tracking store resolves it and the reports find the study it names
(registered models are named after their studies): all three read it with :func:`parse`.

>>> parse("models:/sst2@champion")
ModelUri(name='sst2', alias='champion', version=None)
>>> parse("models:/sst2/3").version, parse("sst2"), parse("models:/sst2"), parse("models:/a@b@c")
('3', None, None, None)
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "models:/"


@dataclass(frozen=True)
class ModelUri:
    """One registered version, named by an alias or a number."""

    name: str
    alias: str | None
    version: str | None

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.alias}" if self.alias else f"{PREFIX}{self.name}/{self.version}"


def parse(text: str) -> ModelUri | None:
    """``text`` as a :class:`ModelUri`; None when it is not one naming a single version."""
    if not text.startswith(PREFIX):
        return None
    name, _, version = text.removeprefix(PREFIX).partition("/")
    name, at, alias = name.partition("@")
    if at and name and alias and "@" not in alias and not version:
        return ModelUri(name, alias, None)
    if not at and name and version.isdigit():
        return ModelUri(name, None, version)
    return None
