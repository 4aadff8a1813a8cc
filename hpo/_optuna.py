"""The two places hpo needs what Optuna keeps private, in one shim so an Optuna upgrade breaks here and nowhere else.

- :func:`reattach`: Optuna has no public way to reattach to a RUNNING trial by its number (a resumed study
  reports to trials an earlier driver opened); ``optuna.trial.Trial`` takes the storage's trial id, which
  ``FrozenTrial`` keeps only as ``_trial_id``.
- :func:`contains`: ``BaseDistribution`` has no public membership test; ``_contains`` is what Optuna itself checks
  enqueued params with (a warm start's configs must lie in this study's space).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution


def reattach(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A live handle on ``frozen`` (a trial of ``study`` still RUNNING in its storage)."""
    return optuna.trial.Trial(study, frozen._trial_id)


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) is one ``distribution`` can produce."""
    return distribution._contains(distribution.to_internal_repr(value))
