"""A search dimension's kind changed from the command line: ``search.X={choices: [...]}`` over a range,
``search.X={low: .., high: ..}`` over a set.

Hydra merges a mapping given for a key into the mapping already there, so a set given over a range would become a
range and a set at once (which Hydra's struct mode refuses as an unknown key, with a hint at the old kind's keys).
The README's words are that a dimension *is* a range, a set or a fixed value: a mapping of another kind replaces the
dimension. This rewrites such an override into Hydra's delete-then-add pair (``~search.X`` and ``+search.X=...``)
before Hydra composes; a mapping of the same kind still merges (``search.X={high: 1e-3}`` changes the bound only),
and a key that is no dimension is left to Hydra, whose refusal keeps hpo's "did you mean" hint.

    >>> base = OmegaConf.create({"search": {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}})
    >>> kind_changes(["search.learning_rate={choices: [0.0001, 0.001]}", "study.seed=1"], lambda _: base)
    ['~search.learning_rate', '+search.learning_rate={choices: [0.0001, 0.001]}', 'study.seed=1']
    >>> kind_changes(["search.learning_rate={high: 0.01}"], lambda _: base)
    ['search.learning_rate={high: 0.01}']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SEARCH = "search."


def _mapping_for_a_dimension(override: str) -> tuple[str, Mapping[str, Any]] | None:
    """``(key, mapping)`` for ``search.X={...}`` (no ``+``/``~``: those say what they do already), else None."""
    key, sep, value = override.partition("=")
    if not sep or not key.startswith(SEARCH) or not value.lstrip().startswith("{"):
        return None
    try:
        parsed = OverridesParser.create().parse_override(override).value()
    except HydraException:  # Hydra's own refusal names the override
        return None
    return (key, parsed) if isinstance(parsed, Mapping) else None


def _kind(dimension: Mapping[str, Any]) -> str:
    return "set" if "choices" in dimension else "range" if {"low", "high"} & set(dimension) else "other"


def kind_changes(overrides: Sequence[str], compose_plain: Callable[[list[str]], DictConfig]) -> list[str]:
    """``overrides`` with each mapping that changes a dimension's kind as a delete-then-add pair. ``compose_plain``
    composes a list of overrides as Hydra would (the config the dimension is looked up in, a preset's own
    dimensions included); it is called only when some override gives a search dimension a mapping. Where the other
    overrides do not compose, nothing is rewritten: the override check names the one at fault."""
    found = {i: hit for i, o in enumerate(overrides) if (hit := _mapping_for_a_dimension(o))}
    if not found:
        return list(overrides)
    others = [o for i, o in enumerate(overrides)  # Hydra's own flags (--cfg job) are no overrides
              if i not in found and not o.startswith("-") and ("=" in o or o.startswith("~"))]
    try:
        base = compose_plain(others)
    except (HydraException, OmegaConfBaseException):  # another override is wrong: the override check says which
        return list(overrides)
    rewritten: list[str] = []
    for i, override in enumerate(overrides):
        if i in found:
            key, new = found[i]
            old = OmegaConf.select(base, key)
            if isinstance(old, Mapping) and _kind(old) != _kind(new):
                rewritten += [f"~{key}", f"+{override}"]
                continue
        rewritten.append(override)
    return rewritten

