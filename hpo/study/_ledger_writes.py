"""The ledger's writes of one trial to the three stores, in the ledger's order (registry, Optuna, MLflow): an epoch,
a trial's end, and how each end reads in Optuna. :class:`hpo.study.ledger.StudyLedger`, the one writer, builds on
this class and decides when each write happens (Ray's events, a resume, the study's end); split off for size.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from hpo._optuna import reattach
from hpo.config.spec import StudySpec
from hpo.ranking import objectives_at_best
from hpo.reporting.plots import evaluation_png
from hpo.reporting.progress import PlainProgress, Tally
from hpo.states import TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry, TrialRecord
from hpo.stores.retention import Retention
from hpo.stores.study_run import StudyRun
from hpo.study.stopping import StopSignal

OOM = "oom"
ERROR = "error"
FAIL_REASON_ATTR = "fail_reason"  # Optuna user attribute of a failed trial


def optuna_state(state: TrialState, fail_reason: str | None, feedback: str) -> OptunaState:
    """What Optuna holds for a trial in ``state`` (the table in :mod:`hpo.study.ledger`)."""
    if state.cut_short:
        return OptunaState.PRUNED if feedback == "pruned" else OptunaState.COMPLETE
    if state == TrialState.FAILED:
        return OptunaState.PRUNED if fail_reason == OOM else OptunaState.FAIL
    return {TrialState.COMPLETED: OptunaState.COMPLETE}.get(state, OptunaState.RUNNING)


class LedgerWrites:
    """The ledger's state and its writes of one trial; see :class:`hpo.study.ledger.StudyLedger`."""

    def __init__(self, spec: StudySpec, registry: Registry, study: optuna.Study, mlflow: StudyRun,
                 store: CheckpointStore, signal: StopSignal,
                 on_finished: Callable[[float | None], None] = lambda best: None,
                 progress: PlainProgress | None = None, study_ending: Callable[[], bool] = lambda: False) -> None:
        self.spec, self.name, self.objective = spec, spec.name, spec.objective
        self.objectives = spec.study.objectives
        self.multi = len(self.objectives) > 1  # a multi-objective study (study.objectives)
        self.registry, self.study, self.mlflow, self.store, self.signal = registry, study, mlflow, store, signal
        self.on_finished = on_finished
        self.study_ending = study_ending  # a stop rule fired: trials cut short now are STOPPED, not PRUNED
        self.progress = progress or PlainProgress(spec.name, Tally(spec.objective, spec.study.num_samples,
                                                                   spec.trainer.max_epochs))
        self.numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self.trials: dict[int, optuna.Trial] = {}  # open Optuna trials, to report to
        self.reported: dict[int, set[int]] = {}  # epochs Optuna holds per open trial
        self.run_ids: dict[int, str] = {}
        self.params: dict[int, dict[str, Any]] = {}  # what each open trial sampled
        self.placed: set[int] = set()  # trials whose node is tagged in MLflow
        self.retries: dict[int, int] = {}  # restarts after a worker died, per trial
        self.epoch_seconds: dict[str, list[float]] = defaultdict(list)  # per model choice (search.model_choice)
        self.first: list[dict[str, Any]] = []  # configs to ask for before the sampler's own (queue)
        self.retention = Retention(store, spec.storage, spec.objective, self.progress.message,
                                   earlier=registry.trials(self.name))

    def _record_epoch(self, number: int, epoch: int, result: dict[str, Any]) -> bool:
        """Records one epoch once; an epoch recorded before an interruption is never recorded again."""
        record = self.registry.require_trial(self.name, number)
        if epoch <= record.epochs:
            return False
        value = result.get(self.objective.metric)
        curve = dict(record.curve or {}) | ({str(epoch): value} if value is not None else {})
        improved = value is not None and self.objective.better(value, record.best_metric)
        at_best = objectives_at_best(record.objectives or {}, result, self.objectives, improved) if self.multi \
            else None
        self.registry.upsert_trial(self.name, number, epochs=epoch, curve=curve, last_metric=value,
                                   best_metric=self.objective.best([record.best_metric, value]),
                                   **({"objectives": at_best} if at_best else {}))
        # Optuna's multi-objective trials take no intermediate values (optuna#3450): ASHA alone prunes them.
        if value is not None and epoch not in self.reported[number] and not self.multi:
            self.trials[number].report(value, epoch)
            self.reported[number].add(epoch)
        self.mlflow.log_epoch(self.run_ids[number], epoch, result)
        return True

    def close(self, number: int, state: TrialState, reason: str | None = None, error: str | None = None) -> None:
        """Ends trial ``number`` as ``state`` in the three stores, in the ledger's order."""
        record = self.registry.upsert_trial(self.name, number, state=state, fail_reason=reason)
        self._tell(record)
        run_id = self.run_ids.get(number) or record.mlflow_run_id
        if run_id:
            latest = self._latest_checkpoint(record)
            evaluation = self.store.read_evaluation(latest) if latest else None
            kept = latest if self.retention.keeps_model(record) else None
            with tempfile.TemporaryDirectory(prefix="hpo-eval-") as tmp:
                figures = [evaluation_png(evaluation, Path(tmp))] if evaluation else []
                self.mlflow.close_trial_run(run_id, state, kept, reason, evaluation, figures, error)
        self.retention.trial_ended(record)
        self.progress.trial_ended(number, state.value, reason, record.epochs, record.best_metric)
        if state.has_result:
            self.on_finished(record.best_metric)

    def _tell(self, record: TrialRecord) -> None:
        """Tells Optuna how a trial ended (nothing for an interrupted one: it stays RUNNING to be resumed)."""
        target = optuna_state(record.state, record.fail_reason, self.spec.study.feedback)
        if target == OptunaState.RUNNING or self._frozen(record.number).state != OptunaState.RUNNING:
            return
        if target == OptunaState.COMPLETE and record.best_metric is None:
            target = OptunaState.FAIL  # ended without a single result
        if record.fail_reason == OOM:
            trial = self.trials.get(record.number) or self._reattach(record.number)
            trial.set_user_attr(FAIL_REASON_ATTR, OOM)
            trial.set_constraint(OOM, 1.0)
        values: float | list[float] | None = record.best_metric if target == OptunaState.COMPLETE else None
        if self.multi and target == OptunaState.COMPLETE:
            at_best = [(record.objectives or {}).get(o.metric) for o in self.objectives]
            values = [v for v in at_best if v is not None]
            if len(values) < len(at_best):
                target, values = OptunaState.FAIL, None
        try:
            self.study.tell(record.number, values, state=target)
        except RuntimeError:
            # GridSampler asks the study to stop once its grid is used up, which Optuna allows only inside
            # study.optimize: the tell itself is stored first. num_samples bounds an hpo study instead.
            if not isinstance(self.study.sampler, optuna.samplers.GridSampler):
                raise

    def _reattach(self, number: int) -> optuna.Trial:
        return reattach(self.study, self._frozen(number))

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]  # numbers are 0..n-1, in order

    def _latest_checkpoint(self, record: TrialRecord) -> str | None:
        return self.store.latest_of_trial(record.ray_trial_dir, record.checkpoint)

    def _checkpointed_results(self, record: TrialRecord) -> dict[int, dict[str, Any]]:
        """Each epoch's results that the trial's newest checkpoint carries (none: nothing): what refills MLflow
        when a crash fell between the registry's write of an epoch and MLflow's (the registry keeps the objective
        alone)."""
        checkpoint = self._latest_checkpoint(record)
        return self._results_in(checkpoint) if checkpoint else {}

    def _results_in(self, checkpoint: str) -> dict[int, dict[str, Any]]:
        """Every metric of each epoch ``checkpoint`` carries, by epoch (older checkpoints: their last epoch only)."""
        summary = self.store.read_summary(checkpoint)
        kept = {int(earlier["epoch"]): earlier for earlier in summary.get("history", [])}
        return kept | {int(summary["epoch"]): summary["metrics"]}
