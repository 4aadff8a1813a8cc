"""The study ledger: the one writer of trial state, to the registry, to Optuna and to MLflow.

Every change to a trial goes through here, in one order: **registry, then Optuna, then MLflow**. The
registry is hpo's own record and is written first, so after a crash between any two writes it holds the
newest truth; Optuna (what the sampler learns) and MLflow (what people read) are derived from it, and
:meth:`StudyLedger.reconcile` replays into them whatever a crash kept from them when the study resumes. A
trial's birth is the one exception: Optuna's ``ask`` assigns the trial number every store keys on, so it
comes first; a trial Optuna knows and the registry does not is continued by the resume like any other.

How a trial's state reads in each store (:func:`hpo.study._ledger_writes.optuna_state`,
:data:`hpo.stores.tracking.RUN_STATUS`):

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

from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from hpo._optuna import reattach
from hpo.config.search_space import MODEL
from hpo.ranking import ConfirmationSummary, pareto_front, summary_of
from hpo.reporting.report import report_study
from hpo.result_keys import GROUP_RESTART_KEY, NODE_KEY, OOM_KEY, STORAGE_FULL_KEY
from hpo.secrets import redacted
from hpo.states import StudyStatus, TrialState
from hpo.study._ledger_writes import ERROR, FAIL_REASON_ATTR, OOM, LedgerWrites
from hpo.study.model_pick import evidence, pick_model
from hpo.study.warm_start import untried
from trainers.checkpoint import best_model

__all__ = ["FAIL_REASON_ATTR", "StudyLedger"]  # the Optuna attribute tests read back


class StudyLedger(LedgerWrites):
    """Records trials as they are born, report epochs, checkpoint and end; tells ``progress`` each time."""

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
            results = self._results_in(resume_from)  # Train runs up to a few epochs ahead of the driver
            for epoch, result in sorted(results.items()):
                self._record_epoch(number, epoch, result)
            self.registry.upsert_trial(self.name, number, checkpoint=resume_from)
            resumed_after = max(results)
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
            if missing_epochs := sorted(set(record.values) - logged):
                kept = self._checkpointed_results(record)  # every metric, where its checkpoint holds the epoch
                for epoch in missing_epochs:
                    self.mlflow.log_epoch(record.mlflow_run_id, epoch,
                                          kept.get(epoch, {self.objective.metric: record.values[epoch]}))
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

