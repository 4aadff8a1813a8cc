"""Building and running the Ray Tune ``Tuner`` for one attempt at a study.

Ray's events reach the study through two thin adapters: :class:`LedgerCallback` hands trial events to the
ledger (the one writer of trial state), :class:`RulesStopper` asks the study's stop rules whether to end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from ray.tune.search import ConcurrencyLimiter

from hpo.config.model_choice import StudyData
from hpo.config.spec import StudySpec
from hpo.result_keys import RESUME_KEY, TRIAL_NUMBER_KEY
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.tracking import TrackingGone
from hpo.study._scheduler_history import RecordedTrial, with_history
from hpo.study._searcher import StudySearch
from hpo.study.ledger import StudyLedger
from hpo.study.stopping import StudyStop
from hpo.study.trial import run_trial
from hpo.study.trial_group import GROUP_TRIAL_BUNDLE, run_trial_group


class LedgerCallback(tune.Callback):
    """Ray Tune's trial events, handed to the ledger."""

    def __init__(self, ledger: StudyLedger) -> None:
        self.ledger = ledger

    def __getstate__(self) -> dict:
        """Ray pickles its run config into tuner.pkl (hpo resumes from its own stores, never from that)."""
        return {}

    def _hand(self, event: Callable[[], None]) -> None:
        """Hands one event to the ledger. MLflow gone for longer than ``tracking.retry_s`` (:class:`TrackingGone`)
        is not raised into Ray Tune, which would print a traceback per trial (or swallow it, in a trial's stop): the
        ledger remembers it, :class:`RulesStopper` ends the run, and the driver says so in one line. What the ledger
        wrote first, the registry, stands; `hpo resume` replays the rest into MLflow."""
        try:
            event()
        except TrackingGone:
            pass

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._hand(lambda: self.ledger.trial_started(trial.trial_id, trial.path, trial.config.get(RESUME_KEY)))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._hand(lambda: self.ledger.epoch_reported(trial.trial_id, result))
        if CHECKPOINT_PATH_KEY in result:  # a group trial's checkpoint, stored by Ray Train (hpo.study.trial_group)
            self._hand(lambda: self.ledger.checkpoint_saved(trial.trial_id, result[CHECKPOINT_PATH_KEY]))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self._hand(lambda: self.ledger.checkpoint_saved(trial.trial_id, checkpoint.path))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._hand(lambda: self.ledger.trial_ended(trial.trial_id, trial.last_result or {}, errored=False))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        latest = trial.checkpoint  # what Ray restarts it from (None: from scratch)
        self._hand(lambda: self.ledger.trial_recovering(trial.trial_id, latest.path if latest else None))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = Path(trial.error_file).read_text(errors="replace") if trial.error_file \
            and Path(trial.error_file).is_file() else None  # the traceback Ray wrote for the trial
        self._hand(lambda: self.ledger.trial_ended(trial.trial_id, trial.last_result or {}, errored=True,
                                                   error=error))


class RulesStopper(tune.Stopper):
    """The study's stop rules as Ray's ``Stopper``: ``stop_all`` ends every trial and the study."""

    def __init__(self, rules: StudyStop, ledger: StudyLedger) -> None:
        self.rules, self.ledger = rules, ledger

    def __getstate__(self) -> dict:
        """See :meth:`LedgerCallback.__getstate__`."""
        return {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        # A trial that returns is reported once more, its last result again with done=True: not a new epoch.
        if not result.get("done") and "epoch" in result:  # an epoch, not an OOM or full-disk notice
            self.rules.result(result.get(self.rules.objective.metric))
        return False

    def stop_all(self) -> bool:
        return self.ledger.mlflow.gone is not None or self.rules.should_stop()


def run_tuner(spec: StudySpec, ledger: StudyLedger, search: StudySearch, rules: StudyStop, data: StudyData,
              store: CheckpointStore, trainable: Callable = run_trial, *, num_trials: int, max_concurrent: int,
              attempt: int, recorded: Sequence[RecordedTrial] = ()) -> None:
    """Runs ``num_trials`` trials (continued ones first), ``max_concurrent`` at a time, until done or stopped. A
    study whose trials are DDP groups (``resources.workers_per_trial`` > 1) runs :func:`run_trial_group`.
    ``recorded``: the trials earlier attempts finished, whose curves the scheduler is told first."""
    tune_dir = f"{spec.name}/tune"
    resources: dict | tune.PlacementGroupFactory = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    group = {}
    if spec.resources.workers_per_trial > 1:
        trainable, resources = run_trial_group, tune.PlacementGroupFactory([GROUP_TRIAL_BUNDLE])
        group = {"resources": spec.resources, "group_storage": store.uri(f"{spec.name}/groups")}
    tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trainable, data=data, trainer=spec.trainer, checkpoints=spec.storage.checkpoints,
                                 task=spec.task, system_metrics=spec.tracking.system_metrics, **group,
                                 **({"models": spec.models} if spec.models else {})),
            resources,
        ),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=max_concurrent),
            scheduler=with_history(spec.scheduler.build(), recorded, spec.objective.metric,
                                   spec.scheduler.kwargs.get("time_attr", "training_iteration")),
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            num_samples=num_trials,
            # A finished trial's worker process runs the next trial: no new process importing torch and
            # transformers per trial (the trainer frees its memory between trials).
            reuse_actors=spec.resources.reuse_workers and not group,  # a group trial's process only waits on it
            trial_name_creator=lambda trial: f"trial_{trial.config.get(TRIAL_NUMBER_KEY, trial.trial_id)}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=f"attempt_{attempt}",
            storage_path=store.uri(tune_dir),  # a shared folder or a bucket on a multi-node cluster
            stop=RulesStopper(rules, ledger),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest: resume state + best/
            # A trial whose worker dies restarts from its latest checkpoint (hpo.trial reads it back); a group's
            # workers are restarted by Ray Train itself (Tune holds no checkpoint of a group trial to restart from).
            failure_config=tune.FailureConfig(max_failures=0 if group else spec.resources.max_retries),
            callbacks=[LedgerCallback(ledger)],
            verbose=1 if spec.cluster.verbose else 0,
        ),
    ).fit()
