"""A resumed study's ASHA starts from the rungs its earlier attempts filled.

Each attempt of a study is a new Ray Tune run with a new scheduler, so without this a resumed study's ASHA would
compare its next trials only with the trials run since the crash: the first one after it with no one, and it would
stop fewer weak trials than the same study run without a crash. Ray's scheduler checkpoint cannot serve (hpo
resumes through its own ledger, not ``Tuner.restore``), so the ledger's curves are played into the new scheduler
through its own hooks, before its first trial arrives: each finished trial as a stub that reports its recorded
epochs in order and is removed. Rungs are then filled exactly as those trials filled them, whatever the order.

Only ASHA (``scheduler=asha``, ``asha_per_model``) keeps rungs that a replay can fill; other schedulers are left as
they are (FIFO has nothing to remember; HyperBand's brackets and the median rule are not replayed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from hpo.study.per_model_asha import PerModelASHA


@dataclass(frozen=True)
class RecordedTrial:
    """A trial an earlier attempt finished: its params and its objective per epoch."""

    number: int
    params: dict[str, Any]
    curve: dict[int, float]


class WithHistory(FIFOScheduler):
    """``scheduler`` (an ASHA) that, before its first trial, is told the curves of ``recorded`` (results of
    ``metric`` by ``time_attr``); otherwise it is ``scheduler`` unchanged: every hook is passed on."""

    def __init__(self, scheduler: TrialScheduler, recorded: Sequence[RecordedTrial], metric: str,
                 time_attr: str) -> None:
        super().__init__()
        self.scheduler, self.recorded, self.metric_name, self.time_attr = scheduler, recorded, metric, time_attr

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.scheduler.set_search_properties(metric, mode, **spec)

    def _replay(self, tune_controller) -> None:
        """Each recorded trial reports its epochs in order, once; then it is gone."""
        recorded, self.recorded = self.recorded, ()
        for trial in recorded:
            # a stub: a Trial rebuilt for its record only, as Ray's own Trial.from_json_state(stub=True) makes them
            stand_in = Trial("recorded", config=trial.params, trial_id=f"recorded_{trial.number}", stub=True)
            self.scheduler.on_trial_add(tune_controller, stand_in)
            for epoch in sorted(trial.curve):
                self.scheduler.on_trial_result(tune_controller, stand_in,
                                               {self.time_attr: epoch, self.metric_name: trial.curve[epoch]})
            self.scheduler.on_trial_remove(tune_controller, stand_in)

    def on_trial_add(self, tune_controller, trial) -> None:
        if self.recorded:
            self._replay(tune_controller)
        self.scheduler.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.scheduler.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self.scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.scheduler.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.scheduler.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        return self.scheduler.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return self.scheduler.debug_string()


def with_history(scheduler: TrialScheduler, recorded: Sequence[RecordedTrial], metric: str,
                 time_attr: str) -> TrialScheduler:
    """``scheduler`` told ``recorded`` before its first trial, where it keeps rungs (ASHA); else ``scheduler``."""
    if not recorded or not isinstance(scheduler, AsyncHyperBandScheduler | PerModelASHA):
        return scheduler
    return WithHistory(scheduler, recorded, metric, time_attr)
