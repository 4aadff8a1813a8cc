"""Running one study, start to end: the whole story in :func:`run_study`.

Claim the study, read the data once, open the three stores, replay what a crash kept from them, continue
interrupted trials and fill the study up to ``num_samples`` with Ray Tune, then record how it ended. Each
step is one call into a module with one job; the study ledger (:mod:`hpo.study.ledger`) is the only writer of
trial state. ``resume=True`` continues a study that crashed or was stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray

from hpo.config.model_check import ensure_model
from hpo.config.model_choice import StudyData, rows_of
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from hpo.ranking import candidates, rerun_seeds
from hpo.reporting.progress import PlainProgress, Tally, make_progress
from hpo.reporting.summary import StudyOutcome, format_params, outcome_of
from hpo.secrets import redact_url, redacted
from hpo.states import StudyStatus, TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.datasets import study_datasets
from hpo.stores.registry import Registry, RegistryError, StudyRecord
from hpo.stores.study_run import StudyRun
from hpo.stores.tracking import set_retry_budget
from hpo.study._capacity import fit_to_cluster, start_ray
from hpo.study._lease import DriverLease
from hpo.study._preflight import check_services
from hpo.study._reruns import run_reruns
from hpo.study._scheduler_history import RecordedTrial
from hpo.study._searcher import StudySearch
from hpo.study._tuner import run_tuner
from hpo.study.launch import JOB_ID_ENV
from hpo.study.ledger import StudyLedger
from hpo.study.resume import interrupted_trials
from hpo.study.signals import StopNow, StopOnSignals, describe
from hpo.study.stopping import StopSignal, StudyStop
from hpo.study.teacher import prepare_with_teacher
from hpo.study.trial import run_trial
from hpo.study.warm_start import first_points


def run_study(spec: StudySpec, *, resume: bool = False, trainable: Callable = run_trial,
              display: str = "auto") -> StudyOutcome:
    """Runs the study until ``num_samples`` trials have finished or a stop rule fires, and records it.

    Everything that can be refused (a live driver, a name taken, data, checkpoint storage, a trial no node
    can hold) is checked before anything is recorded. ``trainable`` runs one trial (``hpo.study.trial.run_trial``:
    fine-tuning); the replay benchmark passes one that plays recorded curves back instead. ``display`` is how
    progress shows (:func:`hpo.reporting.progress.make_progress`: live in a terminal, plain lines in a log, or quiet).
    """
    started = time.time()
    set_retry_budget(spec.tracking.retry_s)
    check_services(spec.storage, spec.cluster)
    registry = Registry.open(spec.storage.registry_url)
    record = _check_can_drive(spec, registry, resume)
    first = first_points(spec, registry, resuming=resume)  # on resume too: the ledger drops those already run
    progress = make_progress(display, spec.name, _tally(spec, registry, record, started))
    for model in [spec.model, *(c.model for c in spec.models.values())]:
        ensure_model(model)
    data = prepare_with_teacher(spec, progress.message)
    store = _open_checkpoints(spec.storage.checkpoints)
    started_ray = start_ray(spec.cluster, state_api=spec.resources.workers_per_trial > 1)
    stop = StopSignal()
    try:
        max_concurrent = fit_to_cluster(spec.resources, spec.study.max_concurrent, log=progress.message)
        checked = _Checked(registry, record, store, data, first, max_concurrent, trainable, progress)
        with StopOnSignals(stop, progress.message) as signals:  # after ray.init, which installs its own handlers
            outcome = _drive(spec, checked, started, signals)
        return dataclasses.replace(outcome, exit_code=signals.exit_code)
    finally:
        if started_ray:
            ray.shutdown()


@dataclass(frozen=True)
class _Checked:
    """What the checks made before anything is recorded found."""

    registry: Registry
    record: StudyRecord | None  # None: a new study
    store: CheckpointStore
    data: StudyData
    first_points: list[dict]  # configs evaluated before the sampler's: a warm start's, or the midpoint
    max_concurrent: int
    trainable: Callable
    progress: PlainProgress


def _drive(spec: StudySpec, checked: _Checked, started: float, signals: StopOnSignals) -> StudyOutcome:
    """The study's phases, in order: register it, open its stores, replay what a crash kept from them, search,
    confirm, and close it (whatever happened: the ledger records how it ended)."""
    record = _register(spec, checked)
    signal = signals.stop
    lease = DriverLease(checked.registry, spec.name, spec.lease, signal, clock_start=started - record.elapsed_s,
                        log=checked.progress.message)
    with lease, checked.progress:
        ledger, rules = _open_stores(spec, checked, record, signal)
        _replay(spec, ledger, checked.first_points, checked.progress.message)
        status, reason = StudyStatus.FAILED, None
        try:
            _search(spec, ledger, rules, checked, resumed=checked.record is not None)
            if ledger.mlflow.gone is not None:  # the tuner ended early for it (hpo.study._tuner)
                raise ledger.mlflow.gone
            rules.should_stop()
            if spec.confirm.top_k and not signal.is_set:
                _confirm(spec, ledger, checked)
            status = StudyStatus.STOPPED if signal.is_set else StudyStatus.COMPLETED
            reason = rules.reason or f"{spec.study.num_samples} trials finished"
        except KeyboardInterrupt:  # Ctrl-C before the handlers were in place
            status, reason = StudyStatus.STOPPED, "interrupted (Ctrl-C)"
            raise
        except BaseException as err:
            if (now := StopNow.within(err)) is not None:
                # A second SIGTERM or Ctrl-C while stopping: the running trials are left to `hpo resume`.
                status, reason = StudyStatus.STOPPED, f"{describe(now.signum)} received twice: stopped at once"
                raise now from None
            if (gone := ledger.mlflow.gone) is not None:
                reason = str(gone)
                raise gone from None
            raise
        finally:
            with signals.closing():
                ledger.close_study(status, reason, lease.elapsed_s())
    registry = checked.registry
    return outcome_of(registry.require(spec.name), registry.trials(spec.name), spec, wall_s=time.time() - started)


def _register(spec: StudySpec, checked: _Checked) -> StudyRecord:
    """The study's registry record: a new study's is created here, the first write of the study."""
    if checked.record is not None:
        return checked.record
    checked.registry.create(spec.name, spec.config_yaml, spec.study.num_samples, spec.objective.metric,
                            spec.objective.mode, optuna_url=redact_url(spec.storage.optuna_url))
    return checked.registry.require(spec.name)


def _open_stores(spec: StudySpec, checked: _Checked, record: StudyRecord,
                 signal: StopSignal) -> tuple[StudyLedger, StudyStop]:
    """MLflow's study run and Optuna's study (both reopened on resume), the stop rules with what earlier attempts
    used up, and the ledger that writes all three stores."""
    registry = checked.registry
    mlflow = StudyRun(spec, checked.store, parent_run_id=record.mlflow_parent_run_id,
                      datasets=study_datasets(spec.data, rows_of(checked.data)))
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    sampler = spec.sampler.build()
    if checked.record is not None:
        sampler.reseed_rng()  # a seeded sampler would otherwise replay its first attempt's draws
    study = optuna.create_study(study_name=spec.name, storage=_optuna_storage(spec.storage.optuna_url),
                                sampler=sampler, directions=[o.direction for o in spec.study.objectives],
                                load_if_exists=True)
    trials = registry.trials(spec.name)
    finished = [t for t in trials if t.state.finished]
    rules = StudyStop(spec.objective, signal, elapsed_before_s=record.elapsed_s,
                      epochs_before=sum(len(t.values) for t in trials),
                      finished_bests=[t.best_metric for t in finished
                                      if t.state != TrialState.FAILED and t.best_metric is not None],
                      **vars(spec.study.stop))
    ledger = StudyLedger(spec, registry, study, mlflow, checked.store, signal, on_finished=rules.trial_finished,
                         progress=checked.progress, study_ending=lambda: rules.reason is not None)
    return ledger, rules


def _replay(spec: StudySpec, ledger: StudyLedger, first_points: list[dict], log: Callable[[str], None]) -> None:
    """Where this attempt runs, what a crash kept from Optuna and MLflow, and the configs to evaluate first."""
    ledger.begin(ray_job_id=os.environ.get(JOB_ID_ENV))
    ledger.reconcile()
    ledger.queue(first_points)
    source = f"from {spec.warm_start.source}" if spec.warm_start.source else spec.study.first_trial
    for point in ledger.first:
        log(f"first trial ({source}): {format_params(point)}")


def _search(spec: StudySpec, ledger: StudyLedger, rules: StudyStop, checked: _Checked, resumed: bool) -> None:
    """Interrupted trials continued and new ones up to ``num_samples``, through Ray Tune."""
    registry, store = checked.registry, checked.store
    resumes = interrupted_trials(ledger.study, registry, store)
    trials = registry.trials(spec.name)
    done = sum(t.state.finished for t in trials)
    new = max(0, spec.study.num_samples - done - len(resumes))
    if resumed:
        checked.progress.message(f"resuming: {done} trial(s) finished, {len(resumes)} to continue, {new} new")
    if not resumes and not new:
        return
    attempt = 1 + store.count(store.path(f"{spec.name}/tune"), "attempt_")
    ledger.begin_attempt(store.display(store.path(f"{spec.name}/tune/attempt_{attempt}")))
    recorded = [RecordedTrial(t.number, t.params or {}, t.values) for t in trials
                if t.state.finished and t.values]  # for ASHA's rungs: hpo.study._scheduler_history
    run_tuner(spec, ledger, StudySearch(ledger, resumes), rules, checked.data, store, checked.trainable,
              num_trials=len(resumes) + new, max_concurrent=checked.max_concurrent, attempt=attempt,
              recorded=recorded)


def _confirm(spec: StudySpec, ledger: StudyLedger, checked: _Checked) -> None:
    """The confirmation stage (:mod:`hpo.ranking`): the top configs' reruns not yet recorded (a resumed study
    runs only what its earlier attempt did not finish), then the ledger has what picks the winner."""
    registry, confirm = checked.registry, spec.confirm
    done = {(c.trial_number, c.seed) for c in registry.confirmations(spec.name) if c.state == TrialState.COMPLETED}
    todo = [(t.number, seed, t.params) for t in candidates(registry.trials(spec.name), spec.objective, confirm.top_k)
            for seed in rerun_seeds(spec.study.seed, confirm.seeds) if (t.number, seed) not in done]
    if not todo:
        return
    checked.progress.message(f"confirmation: {len(todo)} rerun(s) of the top {confirm.top_k} config(s) on seeds "
                             f"{rerun_seeds(spec.study.seed, confirm.seeds)}")
    run_reruns(todo, task=spec.task, trainer=spec.trainer, models=spec.models, data=checked.data,
               cpu=spec.resources.cpu, gpu=spec.resources.gpu, max_retries=spec.resources.max_retries,
               max_concurrent=checked.max_concurrent, stopped=lambda: ledger.signal.is_set,
               started=ledger.rerun_started, ended=ledger.rerun_ended)


def _check_can_drive(spec: StudySpec, registry: Registry, resume: bool) -> StudyRecord | None:
    """Refuses a new sweep over an existing study and a resume of a study with a live driver."""
    record = registry.get(spec.name)
    if record is not None and registry.driver_alive(record, spec.lease.stale_after_s):
        raise RegistryError(
            f"study {spec.name!r} is being driven by pid {record.driver_pid} on {record.driver_host}; "
            f"stop it with `hpo stop {spec.name}` or wait for it to finish"
        )
    if not resume and record is not None:
        raise ConfigError("study.name", f"a study named {spec.name!r} already exists ({record.status}); "
                                        f"continue it with `hpo resume {spec.name}` or choose another study.name")
    if not resume and _optuna_has_trials(spec.name, spec.storage.optuna_url):
        where = redact_url(spec.storage.optuna_url)
        raise ConfigError("study.name", f"{where} already holds a study named {spec.name!r}; "
                                        "choose another study.name or delete that study to start over")
    if resume and record is None:
        registry.require(spec.name)
    return record


def _optuna_storage(url: str) -> optuna.storages.BaseStorage | str:
    """The study's Optuna storage; on a database server, pooled connections it dropped (a restart) are replaced
    before use, as the registry's are."""
    return url if url.startswith("sqlite") else optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _optuna_has_trials(name: str, url: str) -> bool:
    """Whether Optuna's storage at ``url`` already has trials under study ``name`` (never creates a store)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False
    storage = optuna.storages.RDBStorage(url)
    return any(s.study_name == name and s.n_trials for s in optuna.get_all_study_summaries(storage))


def _tally(spec: StudySpec, registry: Registry, record: StudyRecord | None, started: float) -> Tally:
    """The progress counts, starting from what earlier attempts of a resumed study recorded."""
    tally = Tally(spec.objective, spec.study.num_samples, spec.trainer.max_epochs, spec.study.stop.epoch_budget,
                  spec.study.stop.time_budget_s, clock_start=started - (record.elapsed_s if record else 0.0))
    for t in registry.trials(spec.name) if record else []:
        tally.restore(t.number, t.state.value, t.epochs, t.best_metric, t.params or {})
    return tally


def _open_checkpoints(location: str) -> CheckpointStore:
    """``storage.checkpoints``, reached and writable before anything is recorded (a typo in a bucket name or
    missing credentials fail here, not after the first epoch)."""
    try:
        store = CheckpointStore(location)
        store.check_reachable()
    except (OSError, ValueError) as err:
        where, why = redacted(location), str(err).splitlines()[0]
        raise ConfigError("storage.checkpoints", f"cannot write to {where} ({why}); fix the location or the "
                                                 "credentials (e.g. AWS_ACCESS_KEY_ID)") from None
    return store
