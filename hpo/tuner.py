"""Running one study: data -> Optuna searcher + scheduler -> Ray Tune trials -> MLflow + registry.

Reading order: :func:`run_study` is the whole story, from claiming the study in the registry to
recording its best model; the helpers below it each build one part. ``resume=True`` continues a
study that crashed or was stopped: finished trials stay as they are, interrupted ones continue
from their latest checkpoint in their own Optuna trial and MLflow run, and new trials fill the
study up to ``num_samples``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Trials checkpoint every epoch; Ray's warning about frequent snapshots is noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our callback prints one line per epoch instead
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the study like `hpo stop`
# A trial's out-of-memory result carries no metric (trainers report it on every epoch otherwise).
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")

import optuna  # noqa: E402
import ray  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import ConcurrencyLimiter  # noqa: E402

from hpo.checkpoints import CheckpointStore, redacted  # noqa: E402
from hpo.config import StudySpec  # noqa: E402
from hpo.errors import ConfigError  # noqa: E402
from hpo.launch import JOB_ID_ENV  # noqa: E402
from hpo.registry import Registry, RegistryError, StudyRecord, TrialRecord  # noqa: E402
from hpo.searcher import Resume, StudySearch  # noqa: E402
from hpo.stopping import StudyStopper  # noqa: E402
from hpo.tracking import StudyRun, TrialRuns  # noqa: E402
from hpo.trial import run_trial  # noqa: E402
from trainers.data import DataError, PreparedData, prepare_data  # noqa: E402

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class StudyOutcome:
    name: str
    status: str
    stop_reason: str | None
    best_value: float | None
    best_params: dict[str, Any]
    best_trial_number: int | None
    best_checkpoint: str | None
    model_uri: str | None
    trial_status: dict[str, int]
    epochs_used: int
    epochs_max: int
    wall_s: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    optuna_url: str
    notes: list[str] = field(default_factory=list)


def run_study(spec: StudySpec, *, resume: bool = False) -> StudyOutcome:
    """Runs the study until ``num_samples`` trials have finished or a stop rule fires, and records it."""
    started = time.time()
    registry = Registry.open(spec.registry_url)
    record = _check_can_drive(spec, registry, resume)
    data = _prepare(spec)
    warm_points = [] if resume else _warm_start_points(spec, registry)
    store = _open_checkpoints(spec)
    started_ray = _start_ray(spec)
    try:
        max_concurrent = _fit_to_cluster(spec)  # before anything is recorded: a bad fit costs nothing
        return _drive(spec, registry, record, store, data, warm_points, max_concurrent, started, resume)
    finally:
        if started_ray:
            ray.shutdown()


def _drive(spec: StudySpec, registry: Registry, record: StudyRecord | None, store: CheckpointStore,
           data: PreparedData, warm_points: list[dict], max_concurrent: int, started: float,
           resume: bool) -> StudyOutcome:
    if record is None:
        registry.create(spec.name, spec.config_yaml, spec.num_samples, spec.metric, spec.mode,
                        optuna_url=spec.optuna_url)
    registry.claim(spec.name, spec.stale_after_s)
    if os.environ.get(JOB_ID_ENV):
        registry.update(spec.name, ray_job_id=os.environ[JOB_ID_ENV])
    record = registry.require(spec.name)
    study_run = StudyRun(spec, store, parent_run_id=record.mlflow_parent_run_id)
    registry.update(spec.name, mlflow_experiment_id=study_run.experiment_id, mlflow_parent_run_id=study_run.run_id)

    spec.study_dir.mkdir(parents=True, exist_ok=True)
    optuna_study = optuna.create_study(study_name=spec.name, storage=spec.optuna_url, load_if_exists=True,
                                       direction="maximize" if spec.mode == "max" else "minimize")
    resumes = _interrupted_trials(spec, registry, store, optuna_study)
    finished = len(optuna_study.get_trials(deepcopy=False, states=FINISHED_STATES))
    to_run = len(resumes) + max(0, spec.num_samples - finished - len(resumes))
    stopper = StudyStopper(
        spec.metric, spec.mode, time_budget_s=spec.time_budget_s, elapsed_before_s=record.elapsed_s,
        target=spec.stop_target, patience=spec.stop_patience, min_delta=spec.stop_min_delta,
        finished_bests=[t.best_metric for t in registry.trials(spec.name)
                        if t.state in ("completed", "pruned") and t.best_metric is not None],
    )
    if resume:
        spec.sampler.reseed_rng()  # a seeded sampler would otherwise replay its first run's draws
        print(f"[{spec.name}] resuming: {finished} trial(s) finished, {len(resumes)} to continue, "
              f"{to_run - len(resumes)} new", flush=True)

    clock_start = started - record.elapsed_s  # driver time counts over all attempts (time budget)
    heartbeat = _Heartbeat(registry, spec, stopper, clock_start)
    status, reason = "failed", None
    try:
        if to_run:
            searcher = _searcher(spec, resumes, warm_points)
            heartbeat.searcher = searcher
            heartbeat.start()
            callback = TrialRuns(study_run, registry, stopper)
            tune_dir = f"{spec.name}/tune"
            attempt = 1 + store.count(store.path(tune_dir), "attempt_")
            registry.update(spec.name, ray_path=store.display(store.path(f"{tune_dir}/attempt_{attempt}")))
            tune.Tuner(
                tune.with_resources(
                    tune.with_parameters(run_trial, data=data, fixed=spec.trainer | spec.space.fixed,
                                         checkpoints=spec.checkpoints),
                    {"cpu": spec.cpu, "gpu": spec.gpu},
                ),
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                    scheduler=spec.scheduler,
                    metric=spec.metric,
                    mode=spec.mode,
                    num_samples=to_run,
                    # A finished trial's worker process runs the next trial: no new process importing
                    # torch and transformers per trial (the trainer frees its memory between trials).
                    reuse_actors=spec.reuse_workers,
                    trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
                    trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
                ),
                run_config=tune.RunConfig(
                    name=f"attempt_{attempt}",
                    storage_path=store.uri(tune_dir),  # a shared folder or a bucket on a multi-node cluster
                    stop=stopper,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the latest: resume state + best/
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[callback],
                    verbose=1 if spec.ray_verbose else 0,
                ),
            ).fit()
        reason = stopper.reason
        if stopper.user_stop.is_set():
            status = "stopped"
        else:
            status = "completed"
            reason = reason or f"{spec.num_samples} trials finished"
    except KeyboardInterrupt:
        status, reason = "stopped", "interrupted (Ctrl-C)"
        raise
    finally:
        heartbeat.stop()
        outcome = _finish(spec, registry, store, study_run, status, reason, started, clock_start)
    return outcome


def _check_can_drive(spec: StudySpec, registry: Registry, resume: bool) -> StudyRecord | None:
    """Refuses a new sweep over an existing study and a resume of a study with a live driver."""
    record = registry.get(spec.name)
    if record is not None and registry.driver_alive(record, spec.stale_after_s):
        raise RegistryError(
            f"study {spec.name!r} is being driven by pid {record.driver_pid} on {record.driver_host}; "
            f"stop it with `hpo stop {spec.name}` or wait for it to finish"
        )
    if not resume and record is not None:
        raise ConfigError("study.name", f"a study named {spec.name!r} already exists ({record.status}); "
                          f"continue it with `hpo resume {spec.name}` or choose another study.name")
    if not resume and _optuna_has_trials(spec):
        raise ConfigError("study.name", f"{spec.optuna_url} already holds a study named {spec.name!r}; "
                          "choose another study.name or delete that study to start over")
    if resume and record is None:
        registry.require(spec.name)
    return record


def _optuna_has_trials(spec: StudySpec) -> bool:
    """Whether Optuna's storage already has trials under this study's name (never creates a store)."""
    url = spec.optuna_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False
    storage = optuna.storages.RDBStorage(url)
    return any(s.study_name == spec.name and s.n_trials for s in optuna.get_all_study_summaries(storage))


def _prepare(spec: StudySpec) -> PreparedData:
    """Reads and tokenizes the data once for every trial (and caches it for later studies)."""
    d = spec.data
    try:
        data = prepare_data(
            d.train_path, d.validation_path, spec.model_path,
            text_column=d.text_column, label_column=d.label_column, max_length=spec.trainer["max_length"],
            train_limit=d.train_limit, validation_limit=d.validation_limit, seed=spec.seed,
            cache_dir=spec.cache_dir / "tokenized",
        )
    except DataError as err:
        key = "data.validation_path" if str(d.validation_path) in str(err) else "data.train_path"
        raise ConfigError(key, str(err)) from None
    if spec.metric == "val_auc" and data.num_labels != 2:
        raise ConfigError("study.metric", f"val_auc needs a binary task; this data has {data.num_labels} labels")
    print(f"[{spec.name}] data: {len(data.train)} train / {len(data.validation)} validation rows, "
          f"labels {list(data.label_names)}", flush=True)
    return data


def _warm_start_points(spec: StudySpec, registry: Registry) -> list[dict[str, Any]]:
    """The source study's best distinct configs that lie inside this study's space, best first."""
    if spec.warm_start_from is None:
        return []
    source = registry.get(spec.warm_start_from)
    if source is None or source.optuna_url is None:
        known = [s.name for s in registry.list_studies()]
        raise ConfigError("warm_start.from", f"no study named {spec.warm_start_from!r} (studies: {known or 'none'})")
    bests = {t.number: t.best_metric for t in registry.trials(source.name) if t.best_metric is not None}
    trials = optuna.load_study(study_name=source.name, storage=source.optuna_url).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,))
    sign = 1.0 if source.mode == "max" else -1.0
    ranked = sorted(trials, key=lambda t: -sign * bests.get(t.number, t.value))
    points: list[dict[str, Any]] = []
    for trial in ranked:
        point = {name: trial.params.get(name) for name in spec.space.distributions}
        if point not in points and all(_inside(dist, point[name]) for name, dist in spec.space.distributions.items()):
            points.append(point)
        if len(points) == spec.warm_start_top_k:
            break
    print(f"[{spec.name}] warm start: {len(points)} config(s) from {source.name}", flush=True)
    return points


def _inside(distribution, value) -> bool:
    if value is None:
        return False
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


def _interrupted_trials(spec: StudySpec, registry: Registry, store: CheckpointStore,
                        study: optuna.Study) -> list[Resume]:
    """Optuna trials left RUNNING by a crash or a stop, each with its latest checkpoint."""
    resumes = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = registry.trial(spec.name, trial.number)
        checkpoint = _latest_checkpoint(store, record) if record else None
        resumes.append(Resume(trial.number, trial._trial_id, dict(trial.params), checkpoint))
    return resumes


def _latest_checkpoint(store: CheckpointStore, record: TrialRecord) -> str | None:
    """The trial's newest complete checkpoint: the driver may have died after Ray wrote one and before
    the registry heard of it, so the trial's Ray folders are searched, not only the record."""
    folders = [record.ray_trial_dir, record.checkpoint and record.checkpoint.rsplit("/", 1)[0]]
    return store.latest_complete([f for f in folders if f])


def _open_checkpoints(spec: StudySpec) -> CheckpointStore:
    """``storage.checkpoints``, reached and writable before anything is recorded (a typo in a bucket
    name or missing credentials fail here, not after the first epoch)."""
    try:
        store = CheckpointStore(spec.checkpoints)
        store.check_reachable()
    except (OSError, ValueError) as err:
        where, why = redacted(spec.checkpoints), str(err).splitlines()[0]
        raise ConfigError("storage.checkpoints", f"cannot write to {where} ({why}); fix the location or the "
                                                 "credentials (e.g. AWS_ACCESS_KEY_ID)") from None
    return store


def _start_ray(spec: StudySpec) -> bool:
    """Starts a local Ray (or joins ``cluster.address``) unless one is already up; True if we started it."""
    optuna.logging.set_verbosity(optuna.logging.INFO if spec.ray_verbose else optuna.logging.WARNING)
    if ray.is_initialized():
        return False
    local = spec.ray_address is None
    try:
        ray.init(
            address=spec.ray_address or "local",  # a new local Ray, even if another one runs on this machine
            num_cpus=spec.ray_num_cpus if local else None,
            num_gpus=spec.ray_num_gpus if local else None,
            include_dashboard=False if local else None,
            logging_level=logging.INFO if spec.ray_verbose else logging.WARNING,
            log_to_driver=spec.ray_verbose,
        )
    except ConnectionError as err:
        raise ConfigError("cluster.address", f"cannot join the Ray cluster at {spec.ray_address!r} "
                                             f"({str(err).splitlines()[0]}); start it (`ray start --head`), "
                                             "fix the address, or run locally with cluster=local") from None
    return True


def _fit_to_cluster(spec: StudySpec) -> int:
    """How many trials run at once: ``study.max_concurrent``, or as many as the live nodes hold.

    Counted per node (a trial never spans nodes), so four 0.25-GPU trials fit a one-GPU node and
    two 0.5-CPU trials do not fit two half-free nodes as one. A trial no node can hold is a config
    error now, not a study that waits forever.
    """
    need = {"CPU": spec.cpu, "GPU": spec.gpu}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    per_node = [min(int(res.get(k, 0) / v + 1e-9) for k, v in need.items() if v) for res in nodes]
    capacity = sum(per_node)
    if capacity == 0:
        largest = {k: max((res.get(k, 0) for res in nodes), default=0) for k in need}
        key = "resources.gpu" if spec.gpu > largest["GPU"] else "resources.cpu"
        raise ConfigError(key, f"a trial needs {spec.cpu:g} CPU and {spec.gpu:g} GPU but the largest node has "
                               f"{largest['CPU']:g} CPU and {largest['GPU']:g} GPU; lower {key} or add bigger nodes")
    max_concurrent = spec.max_concurrent or capacity
    print(f"[{spec.name}] cluster: {len(nodes)} node(s), room for {capacity} trial(s) at "
          f"{spec.cpu:g} CPU + {spec.gpu:g} GPU each; running up to {max_concurrent} at once", flush=True)
    return max_concurrent


def _searcher(spec: StudySpec, resumes: list[Resume], warm_points: list[dict]) -> StudySearch:
    """Optuna's sampler behind Ray's searcher API; the Optuna study persists in the study folder."""
    return StudySearch(
        space=spec.space.distributions,
        metric=spec.metric,
        mode=spec.mode,
        sampler=spec.sampler,
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(spec.optuna_url),
        points_to_evaluate=warm_points or None,
        resumes=resumes,
    )


class _Heartbeat(threading.Thread):
    """Proves this driver alive every ``heartbeat_s``; turns ``hpo stop`` into a graceful stop."""

    def __init__(self, registry: Registry, spec: StudySpec, stopper: StudyStopper, epoch_start: float) -> None:
        super().__init__(daemon=True, name="hpo-heartbeat")
        self.registry, self.spec, self.stopper, self.epoch_start = registry, spec, stopper, epoch_start
        self.searcher: StudySearch | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.spec.heartbeat_s):
            status = self.registry.heartbeat(self.spec.name, time.time() - self.epoch_start)
            if status == "stopping" and not self.stopper.user_stop.is_set():
                if self.searcher is not None:
                    self.searcher.interrupted = True
                self.stopper.user_stop.set()
                print(f"[{self.spec.name}] stop requested: ending running trials at their checkpoints", flush=True)

    def stop(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join()


def _close_open_trials(spec: StudySpec, registry: Registry, store: CheckpointStore, study_run: StudyRun,
                       status: str) -> None:
    """Trials still open when the study ends: a stopped study keeps them resumable (``interrupted``);
    a study ended by a stop rule prunes them, so no Optuna trial or MLflow run stays RUNNING."""
    if status not in ("stopped", "completed"):
        return  # a failed driver leaves everything for `hpo resume`
    state = "interrupted" if status == "stopped" else "pruned"
    for trial in registry.trials(spec.name):
        if trial.state == "running":
            if trial.mlflow_run_id:
                study_run.close_trial_run(trial.mlflow_run_id, state, _latest_checkpoint(store, trial))
            registry.upsert_trial(spec.name, trial.number, state=state)
    if status == "completed":
        study = optuna.load_study(study_name=spec.name, storage=spec.optuna_url)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.PRUNED)


def _finish(spec: StudySpec, registry: Registry, store: CheckpointStore, study_run: StudyRun, status: str,
            reason: str | None, started: float, clock_start: float) -> StudyOutcome:
    """Records the best trial over all attempts, registers its model, and closes the study."""
    _close_open_trials(spec, registry, store, study_run, status)
    trials = registry.trials(spec.name)
    scored = [t for t in trials if t.best_metric is not None]
    best = None
    if scored:
        best = max(scored, key=lambda t: t.best_metric if spec.mode == "max" else -t.best_metric)
    notes, model_uri, best_checkpoint = [], None, None
    latest = _latest_checkpoint(store, best) if best is not None else None
    if latest:
        best_checkpoint = f"{latest}/best"
        if status == "completed":
            with store.local_copy(best_checkpoint) as folder:
                model_uri = study_run.log_best_model(folder)
        best_checkpoint = store.display(best_checkpoint)
    if not scored:
        notes.append("no trial reported a result: see the failed trials' errors in MLflow and Ray's logs")
    study_run.log_optuna_plots(optuna.load_study(study_name=spec.name, storage=spec.optuna_url))
    best_info = None if best is None else {
        "value": best.best_metric, "params": {**spec.space.fixed, **best.params},
        "number": best.number, "run_id": best.mlflow_run_id}
    run_status = {"completed": "FINISHED", "stopped": "KILLED"}.get(status, "FAILED")
    study_run.finish(best_info, run_status, reason)
    record = registry.require(spec.name)
    registry.update(
        spec.name, status=status, stop_reason=reason, driver_pid=None, heartbeat_at=None,
        elapsed_s=time.time() - clock_start,
        best_trial_number=best.number if best else None, best_metric=best.best_metric if best else None,
        best_params=best_info["params"] if best_info else None, best_checkpoint=best_checkpoint,
        best_model_uri=model_uri or record.best_model_uri,
    )
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return StudyOutcome(
        name=spec.name, status=status, stop_reason=reason,
        best_value=best.best_metric if best else None, best_params=best_info["params"] if best_info else {},
        best_trial_number=best.number if best else None, best_checkpoint=best_checkpoint, model_uri=model_uri,
        trial_status=counts, epochs_used=sum(t.epochs for t in trials),
        epochs_max=spec.num_samples * spec.trainer["max_epochs"], wall_s=time.time() - started,
        tracking_uri=spec.tracking_uri, experiment_id=study_run.experiment_id, parent_run_id=study_run.run_id,
        optuna_url=spec.optuna_url, notes=notes,
    )
