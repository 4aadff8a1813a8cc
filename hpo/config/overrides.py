"""Command-line overrides checked before Hydra runs the sweep, so a typo gets hpo's one-line error naming the
key and the fix instead of Hydra's stack-trace hint: an unknown setting (also one added with ``+``, which
Hydra accepts silently), a group option that does not exist, an override that does not parse.

Hyperparameters are the exception: ``+search.NAME=...`` adds a dimension, which the search space checks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from hpo.config.compose import compose
from hpo.config.resolvers import CONFIG_DIR
from hpo.errors import ConfigError
from hpo.secrets import redact_url


def _leaves(cfg: DictConfig) -> set[str]:
    def walk(node, prefix: str):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            yield prefix
    return set(walk(OmegaConf.to_container(cfg, resolve=False), ""))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def check_overrides(overrides: Sequence[str]) -> None:
    """Raises :class:`ConfigError` for the first override Hydra would refuse or silently accept as new."""

    # Overrides are key=value or ~key; Hydra's own flags and their values (--cfg job) are Hydra's to check.
    plain = [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))]
    try:
        cfg = compose(plain)
    except MissingConfigException as err:
        found = re.search(r"Could not find '([\w/]+)/([^']+)'", str(err))
        if not found:
            raise ConfigError("overrides", str(err).splitlines()[0]) from None
        group, option = found.groups()
        raise ConfigError(group, f"no option {option!r}; choose one of {_options(group)}") from None
    except ConfigCompositionException as err:
        found = re.search(r"Could not override '([^']+)'", str(err))
        key = found.group(1) if found else "overrides"
        raise ConfigError(key, _unknown(key, _leaves(compose([])))) from None
    except OverrideParseException as err:
        bad = next((o for o in plain if not _parses(o)), " ".join(plain))
        key, _, value = bad.partition("=")
        raise ConfigError(key.lstrip("+~"), f"cannot parse {key}={redact_url(value)!r} "
                          f"({str(err).splitlines()[0]}); write key=value, quoting values with spaces, '=' or "
                          "lists: 'key=\"s3://b/p?a=1\"', 'key=[1,2]'") from None
    added = [o for o in plain if o.startswith("+")]
    if added:
        known = _leaves(compose([o for o in plain if not o.startswith("+")]))
        for key in sorted(_leaves(cfg) - known):
            if not key.startswith("search."):  # a new hyperparameter: the search space says whether it is one
                raise ConfigError(key, _unknown(key, known))


def _parses(override: str) -> bool:
    try:
        OverridesParser.create().parse_override(override)
    except HydraException:
        return False
    return True


def _unknown(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"no such setting; {hint}`hpo sweep --cfg job` prints every setting"
