"""Ray Tune's ``OptunaSearch`` made resumable.

On top of OptunaSearch it (1) stamps each suggestion with its Optuna trial number, the identity
that MLflow runs and registry rows hang on; (2) hands out interrupted trials first, reopening the
same Optuna trial with its params and a checkpoint to continue from; (3) leaves trials cut short
by ``hpo stop`` open, so ``hpo resume`` continues them instead of recording a partial result;
(4) teaches the sampler that a config ran out of GPU memory: the trial is told as PRUNED with the
constraint ``oom`` violated (user attr ``fail_reason=oom``). A FAILED trial would be ignored by
TPE and GP, which would then propose the same batch size again; an infeasible one ranks below
every feasible trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from hpo.trial import OOM_KEY, RESUME_KEY, TRIAL_NUMBER_KEY

FAIL_REASON_ATTR = "fail_reason"


@dataclass(frozen=True)
class Resume:
    """An Optuna trial left RUNNING by a crash or a stop, to be run again from ``checkpoint``."""

    number: int
    storage_trial_id: int
    params: dict[str, Any]
    checkpoint: str | None


class StudySearch(OptunaSearch):
    def __init__(self, *args, resumes: list[Resume] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resumes = list(resumes)
        self.interrupted = False  # set on `hpo stop`: finishing trials stay open in Optuna

    def suggest(self, trial_id: str) -> dict | None:
        if self.resumes:
            resume = self.resumes.pop(0)
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, resume.storage_trial_id)
            return {**resume.params, TRIAL_NUMBER_KEY: resume.number, RESUME_KEY: resume.checkpoint}
        params = super().suggest(trial_id)
        if isinstance(params, dict):
            params[TRIAL_NUMBER_KEY] = self._ot_trials[trial_id].number
        return params

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Reports intermediate values by epoch (stable across resumes), not by Ray's iteration count."""
        if trial_id in self._completed_trials or self.metric not in result:
            return
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        ot_trial = self._ot_trials[trial_id]
        if epoch not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(result[self.metric], epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.interrupted:
            self._ot_trials.pop(trial_id, None)  # stays RUNNING in Optuna: `hpo resume` continues it
            return
        if result and result.get(OOM_KEY) and trial_id in self._ot_trials:
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(FAIL_REASON_ATTR, "oom")
            ot_trial.set_constraint("oom", 1.0)
        super().on_trial_complete(trial_id, result=result, error=error)
