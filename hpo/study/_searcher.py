"""Suggesting configurations to Ray Tune: interrupted trials first, then Optuna's sampler.

The searcher only suggests. The sampler's ``ask`` and everything after it (intermediate values, how a
trial ended) are the study ledger's to write (:mod:`hpo.study.ledger`); Ray's own ``OptunaSearch`` would write
Optuna behind the ledger's back, so this small :class:`~ray.tune.search.Searcher` replaces it. A warm
start's configs are queued in Optuna (``enqueue_trial``) before the study runs, so the sampler hands them
out first. Each suggestion carries its Optuna trial number, the identity every store keys on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher

from hpo.result_keys import RESUME_KEY, TRIAL_NUMBER_KEY
from hpo.study.ledger import StudyLedger


@dataclass(frozen=True)
class Resume:
    """A trial left RUNNING by a crash or a stop, to be continued from ``checkpoint`` (None: from scratch)."""

    number: int
    checkpoint: str | None


class StudySearch(Searcher):
    def __init__(self, ledger: StudyLedger, resumes: list[Resume]) -> None:
        super().__init__(metric=ledger.objective.metric, mode=ledger.objective.mode)
        self.ledger, self.resumes = ledger, list(resumes)

    def __getstate__(self) -> dict:
        """Ray pickles its tune config into tuner.pkl (hpo resumes from its own stores, never from that)."""
        return {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.resumes:
            resume = self.resumes.pop(0)
            params = self.ledger.continue_trial(trial_id, resume.number)
            return {**params, TRIAL_NUMBER_KEY: resume.number, RESUME_KEY: resume.checkpoint}
        number, params = self.ledger.new_trial(trial_id)
        return {**params, TRIAL_NUMBER_KEY: number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn here: the ledger tells Optuna how the trial ended."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: hpo resumes from its own stores, never from Ray's experiment state."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""
