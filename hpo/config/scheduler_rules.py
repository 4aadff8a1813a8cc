"""The ranges Ray Tune's schedulers accept for their options, checked in hpo's words before Ray builds one.

Ray refuses a bad option with an ``assert`` (``grace_period must be positive!``) that Hydra wraps as "Error in call to
target"; here each option is named by its key with the range and the fix. Ranges read from Ray 2.60's schedulers
(``async_hyperband.py``, ``hyperband.py``, ``median_stopping_rule.py``). Example::

    >>> try:
    ...     check_scheduler("ray.tune.schedulers.ASHAScheduler", {"grace_period": 0, "max_t": 3})
    ... except ConfigError as err:
    ...     print(err.key)
    scheduler.grace_period
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpo.errors import ConfigError


@dataclass(frozen=True)
class Bound:
    """An option's lower bound (``above``: strictly greater), what it means, and a value that works."""

    minimum: float
    above: bool
    meaning: str
    example: str


_MAX_T = Bound(0, True, "the epochs a trial may train at most", "3")
_GRACE = Bound(0, True, "epochs before a trial may be stopped", "1")
_FACTOR = Bound(1, True, "keep 1/factor of the trials at each rung", "2")
_RULES: dict[str, dict[str, Bound]] = {
    "ASHAScheduler": {"max_t": _MAX_T, "grace_period": _GRACE, "reduction_factor": _FACTOR,
                      "brackets": Bound(1, False, "brackets of successive halving", "1")},
    "AsyncHyperBandScheduler": {"max_t": _MAX_T, "grace_period": _GRACE, "reduction_factor": _FACTOR,
                                "brackets": Bound(1, False, "brackets of successive halving", "1")},
    "PerModelASHA": {"max_t": _MAX_T, "grace_period": _GRACE, "reduction_factor": _FACTOR,
                     "brackets": Bound(1, False, "brackets of successive halving", "1")},
    "HyperBandScheduler": {"max_t": _MAX_T, "reduction_factor": _FACTOR},
    "MedianStoppingRule": {"grace_period": Bound(0, False, "epochs before a trial may be stopped", "1"),
                           "min_samples_required": Bound(1, False, "trials to compare with", "3"),
                           "min_time_slice": Bound(0, False, "epochs between a trial's checks", "0")},
}


def check_scheduler(target: str, options: dict[str, Any]) -> None:
    """Raises :class:`ConfigError` naming ``scheduler.<option>`` for a value Ray's scheduler ``target`` would reject."""
    rules = _RULES.get(target.rsplit(".", 1)[-1], {})
    for option, bound in rules.items():
        if option not in options:
            continue
        value = options[option]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or value < bound.minimum or (bound.above and value == bound.minimum):
            relation = ">" if bound.above else ">="
            raise ConfigError(f"scheduler.{option}", f"must be a number {relation} {bound.minimum:g} "
                                                     f"({bound.meaning}), got {value!r}; e.g. "
                                                     f"scheduler.{option}={bound.example}")
    grace, max_t = options.get("grace_period"), options.get("max_t")
    if "max_t" in rules and grace is not None and max_t is not None and grace > max_t:
        raise ConfigError("scheduler.grace_period", f"{grace} is more than scheduler.max_t={max_t}: no trial would "
                                                    "reach its first rung; lower scheduler.grace_period or raise "
                                                    "trainer.max_epochs")
