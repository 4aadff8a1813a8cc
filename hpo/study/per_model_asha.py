"""ASHA whose rungs are per pretrained model: when a study searches the model, a trial competes at a rung only with
trials of its own model. One set of rungs across models compares epochs, not cost, between models several times
apart in cost and in how fast they learn: a base-size model whose first epoch trails a small model's (while it is
still rising) was cut against it (issue 23's held-out check). Within a model, it is Ray's
:class:`~ray.tune.schedulers.AsyncHyperBandScheduler` unchanged: one per model, made when its first trial arrives.
``scheduler=asha_per_model``; a study that does not search the model has one model, hence plain ASHA.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from hpo.config.search_space import MODEL


class PerModelASHA(FIFOScheduler):
    """``AsyncHyperBandScheduler(**options)`` per value of the trial's ``model`` parameter."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options
        self.by_model: dict[str, AsyncHyperBandScheduler] = {}
        self.metric_mode: tuple[str | None, str | None] = (options.pop("metric", None), options.pop("mode", None))

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self.metric_mode = (metric or self.metric_mode[0], mode or self.metric_mode[1])
        return all(s.set_search_properties(metric, mode, **spec) for s in self.by_model.values())

    def _of(self, trial: Trial) -> AsyncHyperBandScheduler:
        model = str(trial.config.get(MODEL))
        if model not in self.by_model:
            metric, mode = self.metric_mode
            self.by_model[model] = AsyncHyperBandScheduler(metric=metric, mode=mode, **self.options)
        return self.by_model[model]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{model}: {s.debug_string()}" for model, s in self.by_model.items()) or "PerModelASHA"

