"""The study ledger: the one writer of trial state, to the registry, to Optuna and to MLflow.

Every change to a trial goes through here, in one order: **registry, then Optuna, then MLflow**. The
registry is hpo's own record and is written first, so after a crash between any two writes it holds the
newest truth; Optuna (what the sampler learns) and MLflow (what people read) are derived from it, and
:meth:`StudyLedger.reconcile` replays into them whatever a crash kept from them when the study resumes. A
trial's birth is the one exception: Optuna's ``ask`` assigns the trial number every store keys on, so it
comes first; a trial Optuna knows and the registry does not is continued by the resume like any other.

How a trial's state reads in each store (:func:`optuna_state`, :data:`hpo.stores.tracking.RUN_STATUS`):

    registry      Optuna                                  MLflow run (tag hpo.trial_status)
    RUNNING       RUNNING                                 RUNNING
    COMPLETED     COMPLETE, value = its best epoch        FINISHED
    PRUNED        PRUNED, one intermediate value/epoch    FINISHED
    STOPPED       (COMPLETE with its best value if search.feedback=complete)
    FAILED        FAIL; out of memory: PRUNED + constraint "oom" (TPE and GP skip FAILed configs and
                  would propose them again; an infeasible one ranks below every feasible trial)
    INTERRUPTED   RUNNING (resumable: `hpo resume` continues it)     KILLED
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
from hpo.config.search_space import MODEL
from hpo.config.spec import StudySpec
from hpo.ranking import ConfirmationSummary, objectives_at_best, pareto_front, summary_of
from hpo.reporting.plots import evaluation_png
from hpo.reporting.progress import PlainProgress, Tally
from hpo.reporting.report import report_study
from hpo.result_keys import GROUP_RESTART_KEY, NODE_KEY, OOM_KEY, STORAGE_FULL_KEY
from hpo.secrets import redacted
from hpo.states import StudyStatus, TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry, TrialRecord
from hpo.stores.retention import Retention
from hpo.stores.study_run import StudyRun
from hpo.study.model_pick import evidence, pick_model
from hpo.study.stopping import StopSignal
from hpo.study.warm_start import untried
from trainers.checkpoint import best_model

OOM = "oom"
ERROR = "error"
FAIL_REASON_ATTR = "fail_reason"  # Optuna user attribute of a failed trial


def optuna_state(state: TrialState, fail_reason: str | None, feedback: str) -> OptunaState:
    """What Optuna holds for a trial in ``state`` (see the table above)."""
    if state.cut_short:
        return OptunaState.PRUNED if feedback == "pruned" else OptunaState.COMPLETE
    if state == TrialState.FAILED:
        return OptunaState.PRUNED if fail_reason == OOM else OptunaState.FAIL
    return {TrialState.COMPLETED: OptunaState.COMPLETE}.get(state, OptunaState.RUNNING)


class StudyLedger:
    """Records trials as they are born, report epochs, checkpoint and end; tells ``progress`` each time."""

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

    # --- birth ------------------------------------------------------------------------------------

    def queue(self, points: list[dict[str, Any]]) -> None:
        """Configs the sampler hands out before its own (a warm start, the portfolio, the midpoint), less those a
        trial already ran (a resumed study). Each reaches Optuna only as its trial is asked (``enqueue_trial``,
        then ``ask``): a queued config waits in Optuna with a trial number no other store knows, and a stop
        would leave it there."""
        self.first = untried(points, (t.params for t in self.study.get_trials(deepcopy=False)))

    def new_trial(self, ray_trial_id: str) -> tuple[int, dict[str, Any]]:
        """Asks the sampler for a new trial; returns its number and sampled params."""
        if not self.study.get_trials(deepcopy=False, states=(OptunaState.WAITING,)):  # a crash's leftover first
            if self.first:
                self.study.enqueue_trial(self.first.pop(0))
            elif self.spec.study.model_choice == "ei_per_second":
                self._queue_model()
        trial = self.study.ask()
        params = self.spec.space.sample(trial)
        self._open(ray_trial_id, trial, params, new=True)
        return trial.number, params

    def _queue_model(self) -> None:
        """Fixes the next trial's model by expected improvement per second (the sampler picks the rest)."""
        seen = evidence(list(self.spec.models), self.registry.trials(self.name), self.epoch_seconds)
        model = pick_model(seen, maximize=self.objective.mode == "max", epochs=self.spec.trainer.max_epochs)
        if model is not None:
            self.study.enqueue_trial({MODEL: model})

    def continue_trial(self, ray_trial_id: str, number: int) -> dict[str, Any]:
        """Reopens an interrupted trial (RUNNING in Optuna) under a new Ray trial; returns its params."""
        frozen = self._frozen(number)
        self._open(ray_trial_id, reattach(self.study, frozen), dict(frozen.params))
        return dict(frozen.params)

    def _open(self, ray_trial_id: str, trial: optuna.Trial, params: dict[str, Any], new: bool = False) -> None:
        number = trial.number
        self.numbers[ray_trial_id], self.trials[number], self.params[number] = number, trial, params
        self.reported[number] = set(self._frozen(number).intermediate_values)
        self.registry.upsert_trial(self.name, number, state=TrialState.RUNNING, params=params,
                                   ray_trial_id=ray_trial_id)
        self.run_ids[number] = run_id = self.mlflow.open_trial_run(number, params | self.spec.space.fixed, new)
        self.registry.upsert_trial(self.name, number, mlflow_run_id=run_id)

    # --- Ray's events -----------------------------------------------------------------------------

    def trial_started(self, ray_trial_id: str, trial_dir: str, resume_from: str | None) -> None:
        number = self.numbers[ray_trial_id]
        self.registry.upsert_trial(self.name, number, ray_trial_dir=trial_dir)
        resumed_after = None
        if resume_from:  # the checkpoint's epochs may be ones the crash kept from the stores: a DDP group's Ray
            summary = self.store.read_summary(resume_from)  # Train runs up to a few epochs ahead of the driver
            for earlier in summary.get("history", [])[:-1]:  # (older checkpoints: the last epoch alone)
                self._record_epoch(number, int(earlier["epoch"]), earlier)
            self._record_epoch(number, summary["epoch"], summary["metrics"])
            self.registry.upsert_trial(self.name, number, checkpoint=resume_from)
            resumed_after = summary["epoch"]
        self.mlflow.mark_started(self.run_ids[number], ray_trial_id, resumed_after)
        self.progress.trial_started(number, self.params[number], resumed_after)

    def epoch_reported(self, ray_trial_id: str, result: dict[str, Any]) -> None:
        number = self.numbers.get(ray_trial_id)
        if number is None or "epoch" not in result:
            return
        if (model := self.params.get(number, {}).get(MODEL)) is not None and "epoch_seconds" in result:
            self.epoch_seconds[str(model)].append(float(result["epoch_seconds"]))
        if (after := result.get(GROUP_RESTART_KEY)) is not None:  # Ray Train restarted the trial's group
            self._retried(number, int(after), "a worker of its group died; Ray Train restarted the group")
        if number not in self.placed and NODE_KEY in result:
            self.placed.add(number)
            self.mlflow.tag_node(self.run_ids[number], result[NODE_KEY], result.get("node_ip"))
        if self._record_epoch(number, int(result["epoch"]), result):
            self.progress.epoch(number, int(result["epoch"]), result.get(self.objective.metric))

    def trial_recovering(self, ray_trial_id: str, checkpoint: str | None) -> None:
        """Ray restarts a trial whose worker died from its latest checkpoint: the same trial in every store."""
        if (number := self.numbers.get(ray_trial_id)) is None:
            return
        # A worker killed right after it reported can reach here before Ray has registered that report's checkpoint
        # (None), although Ray restarts from it: the trial's newest complete checkpoint on storage is what it uses.
        checkpoint = checkpoint or self._latest_checkpoint(self.registry.require_trial(self.name, number))
        after = self.store.read_summary(checkpoint)["epoch"] if checkpoint else 0
        self._retried(number, after, "its worker died; restarting it")

    def _retried(self, number: int, after: int, what: str) -> None:
        retries = self.retries.get(number, 0) + 1
        self.retries[number] = retries
        self.mlflow.tag(self.run_ids[number], **{"hpo.retries": str(retries), "hpo.resumed_after_epoch": str(after)})
        self.progress.message(f"trial {number}: {what} after epoch {after} from its latest checkpoint (retry "
                              f"{retries} of {self.spec.resources.max_retries})")

    def checkpoint_saved(self, ray_trial_id: str, path: str) -> None:
        if (number := self.numbers.get(ray_trial_id)) is not None:
            self.registry.upsert_trial(self.name, number, checkpoint=path)

    def trial_ended(self, ray_trial_id: str, last_result: dict[str, Any], errored: bool,
                    error: str | None = None) -> None:
        """A trial's end as Ray saw it; ``error``: the traceback of a trial that raised (kept in its MLflow run)."""
        number = self.numbers.get(ray_trial_id)
        if number is None or self.mlflow.gone is not None:  # MLflow is gone: left running, as a crash leaves it
            return
        record = self.registry.require_trial(self.name, number)
        if last_result.get(STORAGE_FULL_KEY):
            where = redacted(self.spec.storage.checkpoints)
            self.signal.request(f"no space left for checkpoints in {where} ({last_result.get('error', '')}); free "
                                f"space and run `hpo resume {self.name}`")
            self.close(number, TrialState.INTERRUPTED)
        elif self.signal.is_set:  # a stop (hpo stop, SIGTERM, Ctrl-C, which may also reach its worker) cut it short
            self.close(number, TrialState.INTERRUPTED)
        elif errored or last_result.get(OOM_KEY):
            self.close(number, TrialState.FAILED, OOM if not errored else ERROR, error)
        elif record.epochs >= self.spec.trainer.max_epochs or last_result.get("early_stopped"):
            self.close(number, TrialState.COMPLETED)
        elif self.study_ending():  # the study's budget or stop rule, not the scheduler, ended it
            self.close(number, TrialState.STOPPED)
        else:
            self.close(number, TrialState.PRUNED)

    # --- writes -----------------------------------------------------------------------------------

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

    # --- confirmation reruns (hpo.study._reruns): not told to Optuna, whose sampler learns from the search alone ---

    def rerun_started(self, number: int, seed: int) -> None:
        trial = self.registry.require_trial(self.name, number)
        restarted = any((c.trial_number, c.seed) == (number, seed) for c in self.registry.confirmations(self.name))
        self.registry.upsert_confirmation(self.name, number, seed, state=TrialState.RUNNING, epochs=0, best_metric=None)
        run_id = self.mlflow.open_rerun_run(number, seed, {**self.spec.space.fixed, **trial.params},
                                            trial.mlflow_run_id, restarted)
        self.registry.upsert_confirmation(self.name, number, seed, mlflow_run_id=run_id)
        self.progress.message(f"confirming trial {number}'s config on seed {seed}")

    def rerun_ended(self, number: int, seed: int, epochs: list[dict[str, float]] | None, error: str | None) -> None:
        """A rerun's end: its epochs (completed), an error (failed), or neither (stopped: rerun on resume)."""
        state = TrialState.COMPLETED if epochs else TrialState.FAILED if error else TrialState.INTERRUPTED
        best = self.objective.best(e.get(self.objective.metric) for e in epochs or [])
        record = self.registry.upsert_confirmation(self.name, number, seed, state=state, best_metric=best,
                                                   epochs=len(epochs or []))
        if record.mlflow_run_id:
            self.mlflow.close_rerun_run(record.mlflow_run_id, state, epochs or [])
        outcome = f"{self.objective.metric} {best:.4f}" if best is not None else (error or "stopped")
        self.progress.message(f"trial {number}'s config on seed {seed}: {state.value}, {outcome}")

    def reconcile_reruns(self) -> None:
        """Closes the MLflow run of a rerun the registry saw end before a crash cut MLflow short (its epochs died
        with the driver; the registry keeps its best value and state)."""
        for rerun in self.registry.confirmations(self.name):
            if (rerun.state != TrialState.RUNNING and rerun.mlflow_run_id
                    and self.mlflow.run_status(rerun.mlflow_run_id) == "RUNNING"):
                self.mlflow.close_rerun_run(rerun.mlflow_run_id, rerun.state, [])

    def confirmation(self) -> ConfirmationSummary | None:
        """The confirmed ranking of the study's top configs, when ``confirm.top_k`` is on."""
        confirm = self.spec.confirm
        if not confirm.top_k:
            return None
        return summary_of(self.registry.trials(self.name), self.registry.confirmations(self.name), self.objective,
                          confirm.top_k, confirm.rank_by)

    # --- study boundaries -------------------------------------------------------------------------

    def begin(self, ray_job_id: str | None) -> None:
        """Records where this attempt's study lives in MLflow (and the Ray job running it, if launched)."""
        launched = {"ray_job_id": ray_job_id} if ray_job_id else {}
        self.registry.update(self.name, mlflow_experiment_id=self.mlflow.experiment_id,
                             mlflow_parent_run_id=self.mlflow.run_id, **launched)

    def begin_attempt(self, ray_path: str) -> None:
        """Where Ray keeps this attempt's results and checkpoints."""
        self.registry.update(self.name, ray_path=ray_path)

    def close_open_trials(self, status: StudyStatus) -> None:
        """Trials still open when the study ends: a stopped study keeps them resumable (INTERRUPTED); a study
        ended by a stop rule records them STOPPED. A failed driver leaves everything for `hpo resume`."""
        if status not in (StudyStatus.STOPPED, StudyStatus.COMPLETED):
            return
        state = TrialState.INTERRUPTED if status == StudyStatus.STOPPED else TrialState.STOPPED
        for record in self.registry.trials(self.name):
            if record.state == TrialState.RUNNING:
                self.close(record.number, state)

    def reconcile(self) -> None:
        """Before a resumed study runs: replays into Optuna and MLflow what the registry recorded and a crash
        kept from them (epochs, ends), so all three agree again."""
        trials = self.study.get_trials(deepcopy=False)
        for record in self.registry.trials(self.name):
            frozen = trials[record.number]
            if frozen.state == OptunaState.RUNNING:
                missing = {} if self.multi else {e: v for e, v in record.values.items()
                                                 if e not in frozen.intermediate_values}
                if missing:
                    trial = self._reattach(record.number)
                    for epoch, value in sorted(missing.items()):
                        trial.report(value, epoch)
                self._tell(record)
            if record.mlflow_run_id is None:
                continue
            logged = self.mlflow.logged_epochs(record.mlflow_run_id)
            for epoch, value in sorted(record.values.items()):
                if epoch not in logged:
                    self.mlflow.log_epoch(record.mlflow_run_id, epoch, {self.objective.metric: value})
            if record.state != TrialState.RUNNING and self.mlflow.run_status(record.mlflow_run_id) == "RUNNING":
                self.mlflow.close_trial_run(record.mlflow_run_id, record.state, self._latest_checkpoint(record),
                                            record.fail_reason)
        self.reconcile_reruns()

    def close_study(self, status: StudyStatus, reason: str | None, elapsed_s: float) -> None:
        """The study's end: open trials closed, its best trial (over all attempts) found and its model
        registered when the study completed, then the registry's study record, then MLflow's study run."""
        self.close_open_trials(status)
        trials = self.registry.trials(self.name)
        confirmed = self.confirmation() if status == StudyStatus.COMPLETED else None
        ranked = self.objective.ranked(trials, key=lambda t: t.best_metric)
        best = next(t for t in trials if t.number == confirmed.winner) if confirmed else ranked[0] if ranked else None
        checkpoint = self._latest_checkpoint(best) if best else None
        model_uri = None
        if confirmed:
            self.mlflow.log_confirmation(confirmed, {t.number: t.mlflow_run_id for t in trials})
            self.progress.message(confirmed.describe())
        if self.multi:
            front = pareto_front(trials, self.objectives)
            self.mlflow.log_pareto(front, self.objectives)
            self.progress.message(f"Pareto front: trials {[t.number for t in front]}")
        if best and checkpoint and status == StudyStatus.COMPLETED:
            mean = confirmed.config(best.number).mean if confirmed else None
            with self.store.full_model(best_model(checkpoint)) as folder:
                value = best.best_metric if mean is None else mean
                assert value is not None, "a ranked trial has a value"
                model_uri = self.mlflow.log_best_model(folder, value, best.number, confirmed=mean is not None)
            self.retention.study_ended(keep=best.number)
        params = {**self.spec.space.fixed, **best.params} if best else None
        self.registry.update(
            self.name, status=status, stop_reason=reason, driver_pid=None, heartbeat_at=None, elapsed_s=elapsed_s,
            best_trial_number=best.number if best else None, best_metric=best.best_metric if best else None,
            best_params=params, best_checkpoint=self.store.display(best_model(checkpoint)) if checkpoint else None,
            **({"best_model_uri": model_uri} if model_uri else {}),
        )
        if self.mlflow.gone is None:  # the report goes to MLflow too; `hpo report` draws it once the server is back
            self._report()
        self.mlflow.finish(None if best is None else {"value": best.best_metric, "params": params,
                                                      "number": best.number, "run_id": best.mlflow_run_id},
                           status.mlflow_status, reason)

    def _report(self) -> None:
        report_study(self.registry, self.name, self.spec.study_dir / "report", self.mlflow, self.progress.message)

