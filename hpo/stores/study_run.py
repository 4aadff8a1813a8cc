"""A study in MLflow: one experiment per study, a parent run for the study, a nested run per trial and per
confirmation rerun.

Every call here is made by the study ledger (:mod:`hpo.study.ledger`), the one component that decides what a
trial's state is; this module knows how that looks in MLflow. Trials are logged from the driver, so trial
processes need no MLflow access. A trial's identity is its Optuna trial number: its run is tagged
``hpo.optuna_trial_number`` and a resumed trial continues its run instead of opening a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from mlflow import MlflowClient
from mlflow.entities import DatasetInput, Metric, RunTag
from mlflow.exceptions import MlflowException

from hpo.config.spec import StudySpec
from hpo.result_keys import SYSTEM_PREFIX
from hpo.secrets import redacted
from hpo.states import TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.tracking import (
    CHAMPION,
    EVALUATION_DIR,
    EXPERIMENT_KIND_TAG,
    FAIL_REASON_TAG,
    LOGGED_METRICS,
    NODE_TAG,
    RUN_STATUS,
    STATUS_TAG,
    TRIAL_ID_TAG,
    TRIAL_NUMBER_TAG,
    VALUE_TAG,
    TrackingGone,
    WatchedClient,
    client,
    finish_study_run,
    log_fine_tuned,
    log_report,
    metrics_at,
    now_ms,
    params_of,
    reported_metrics,
    set_trials_view,
)
from trainers.checkpoint import best_model
from trainers.tasks import task_info


class StudyRun:
    """The study's MLflow experiment and parent run (reopened, not recreated, on resume), and its trials' runs."""

    def __init__(self, spec: StudySpec, store: CheckpointStore, parent_run_id: str | None = None,
                 datasets: Sequence[DatasetInput] = ()) -> None:
        self.spec, self.store, self.datasets = spec, store, list(datasets)  # hpo.datasets: what trials train on
        self.watched = WatchedClient(client(spec.storage.tracking_uri), redacted(spec.storage.tracking_uri))
        self.client = cast(MlflowClient, self.watched)  # every call goes through to the client's own method
        experiment = self.client.get_experiment_by_name(spec.name)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            location = None
            if spec.storage.tracking_uri.startswith("sqlite:"):  # a local store: keep artifacts beside it
                location = (spec.storage.root / "mlartifacts" / spec.name).as_uri()
            # A model-training experiment: MLflow 3's UI opens it on its runs, not on the GenAI overview.
            self.experiment_id = self.client.create_experiment(spec.name, artifact_location=location,
                                                               tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
        objectives = [(o.metric, o.mode) for o in spec.study.objectives]
        set_trials_view(self.client, self.experiment_id, objectives, sorted(spec.space.distributions))
        if parent_run_id is not None:
            self.run_id = parent_run_id
            self.client.update_run(parent_run_id, status="RUNNING")
            return
        run = self.client.create_run(
            self.experiment_id, run_name=spec.name, tags={"hpo.study": spec.name, "hpo.role": "study"}
        )
        self.run_id = run.info.run_id
        if self.datasets:
            self.client.log_inputs(self.run_id, datasets=self.datasets)
        described = spec.space.describe()
        self.client.log_text(self.run_id, spec.config_yaml, "study_config.yaml")
        self.client.log_dict(self.run_id, described, "search_space.json")
        self.client.log_batch(self.run_id, params=params_of(
            {f"space.{k}": v for k, v in described.items()}
            | {"num_samples": spec.study.num_samples, "metric": spec.objective.metric, "mode": spec.objective.mode,
               "sampler": spec.sampler.name, "scheduler": spec.scheduler.name, "feedback": spec.study.feedback}))

    @property
    def gone(self) -> TrackingGone | None:
        """Set once the tracking server stopped answering for longer than ``tracking.retry_s``."""
        return self.watched.gone

    # --- the study's run ----------------------------------------------------------------------

    def finish(self, best: dict[str, Any] | None, status: str, stop_reason: str | None) -> None:
        """Records the best trial and why the study ended on the parent run, and closes it."""
        finish_study_run(self.client, self.run_id, self.spec.objective.metric, best, status, stop_reason)

    def log_best_model(self, checkpoint_dir: Path, value: float, trial_number: int, confirmed: bool = False) -> str:
        """Logs the best checkpoint (a local folder) as a pyfunc model under the parent run, registers it under
        the study's name with its trial and value as tags, and moves the alias ``champion`` to it unless the
        champion is at least as good. ``confirmed``: ``value`` is the config's mean over its confirmation reruns.
        Returns its URI."""
        if task_info(self.spec.task).user_function:  # files only the user's code reads: an artifact, no pyfunc
            self.client.log_artifacts(self.run_id, str(checkpoint_dir), "best_model")
            return f"runs:/{self.run_id}/best_model"
        register_as = self.spec.name if self.spec.register_best else None
        uri, version = log_fine_tuned(self.spec.storage.tracking_uri, self.run_id, checkpoint_dir, register_as,
                                      self.spec.task)
        if version is None:
            return uri
        tags = {"hpo.study": self.spec.name, "hpo.trial_number": str(trial_number), "hpo.metric":
                self.spec.objective.metric, VALUE_TAG: repr(value), "hpo.kind": "search",
                "hpo.confirmed": str(confirmed)}
        for key, tag in tags.items():
            self.client.set_model_version_tag(self.spec.name, version, key, tag)
        self._crown(version, value)
        return f"models:/{self.spec.name}/{version}"

    def _crown(self, version: str, value: float) -> None:
        try:
            champion = self.client.get_model_version_by_alias(self.spec.name, CHAMPION)
            held = float(champion.tags[VALUE_TAG]) if VALUE_TAG in champion.tags else None
        except MlflowException:  # no champion yet
            held = None
        if self.spec.objective.better(value, held):
            self.client.set_registered_model_alias(self.spec.name, CHAMPION, version)

    def log_report(self, folder: Path) -> None:
        log_report(self.client, self.run_id, folder)

    # --- trials' runs -------------------------------------------------------------------------

    def _find_child(self, **tags: str) -> str | None:
        """The study run's child run carrying ``tags``, if MLflow has one."""
        conditions = [f"tags.`{k}` = '{v}'" for k, v in {**tags, "mlflow.parentRunId": self.run_id}.items()]
        runs = self.client.search_runs([self.experiment_id], filter_string=" and ".join(conditions), max_results=1)
        return runs[0].info.run_id if runs else None

    def find_trial_run(self, number: int) -> str | None:
        """The child run of Optuna trial ``number``, if MLflow already has one."""
        return self._find_child(**{TRIAL_NUMBER_TAG: str(number)})

    def open_trial_run(self, number: int, params: dict[str, Any], new: bool = False) -> str:
        """Trial ``number``'s run: reopened if it has one, else created with every setting as a param. ``new``: a
        trial Optuna has just created, which cannot have a run yet (no search: it grows with the study's runs)."""
        run_id = None if new else self.find_trial_run(number)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STATUS_TAG, TrialState.RUNNING.value)
            return run_id
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial_{number:04d}",
            tags={"mlflow.parentRunId": self.run_id, TRIAL_NUMBER_TAG: str(number), "hpo.study": self.spec.name,
                  STATUS_TAG: TrialState.RUNNING.value},
        )
        fixed = {k: v for k, v in self.spec.trainer.to_dict().items()
                 if k not in ("model_name_or_path", "num_threads", "resume_from")}
        self.client.log_batch(run.info.run_id, params=params_of(fixed | params))
        if self.datasets:
            self.client.log_inputs(run.info.run_id, datasets=self.datasets)
        return run.info.run_id

    # --- confirmation reruns (hpo.ranking) --------------------------------------------------------

    def find_rerun_run(self, number: int, seed: int) -> str | None:
        """The run of trial ``number``'s rerun on ``seed``, if MLflow has one (a crash can fall between its creation
        and the registry learning its id)."""
        return self._find_child(**{"hpo.confirms_trial": str(number), "hpo.seed": str(seed)})

    def open_rerun_run(self, number: int, seed: int, params: dict[str, Any], trial_run_id: str | None,
                       restarted: bool) -> str:
        """A seed-only rerun of trial ``number``'s config: nested under the study, tagged ``hpo.role=confirmation``
        and linked to the trial's run (``hpo.confirms_run_id``). ``restarted``: the rerun was started before (a
        crash cut it short), so the run it may have is reopened rather than a second one made."""
        run_id = self.find_rerun_run(number, seed) if restarted else None
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STATUS_TAG, TrialState.RUNNING.value)
        else:
            run_id = self.client.create_run(
                self.experiment_id, run_name=f"trial_{number:04d}_seed_{seed}",
                tags={"mlflow.parentRunId": self.run_id, "hpo.study": self.spec.name, "hpo.role": "confirmation",
                      "hpo.confirms_trial": str(number), "hpo.confirms_run_id": trial_run_id or "",
                      "hpo.seed": str(seed), STATUS_TAG: TrialState.RUNNING.value}).info.run_id
        fixed = {k: v for k, v in self.spec.trainer.to_dict().items()
                 if k not in ("model_name_or_path", "num_threads", "resume_from")}
        # logged again on a reopened run too (the crash may have come before they were): MLflow accepts equal values
        self.client.log_batch(run_id, params=params_of(fixed | params | {"seed": seed}))
        return run_id

    def close_rerun_run(self, run_id: str, state: TrialState, epochs: Sequence[Mapping[str, float]]) -> None:
        for epoch in epochs:
            self.log_epoch(run_id, int(epoch["epoch"]), dict(epoch))
        self.tag(run_id, **{STATUS_TAG: state.value})
        self.client.set_terminated(run_id, RUN_STATUS[state])

    def log_confirmation(self, summary, run_ids: Mapping[int, str | None]) -> None:
        """The confirmed mean on each confirmed trial's run; the winner and the search's optimism gap on the study's."""
        metric = self.spec.objective.metric
        for config in summary.configs:
            if (run_id := run_ids.get(config.trial_number)) and config.mean is not None:
                self.client.log_batch(run_id, metrics=[Metric(f"confirmed_{metric}_mean", config.mean, now_ms(), 0),
                                                       Metric(f"confirmed_{metric}_sd", config.sd, now_ms(), 0)],
                                      tags=[RunTag("hpo.confirm_seeds", str(len(config.values)))])
        tags = {"hpo.confirmed_winner": str(summary.winner), "hpo.search_best_trial": str(summary.search_best),
                "hpo.winner_changed": str(summary.winner_changed)}
        gap = summary.optimism_gap
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()],
                              metrics=[Metric("optimism_gap", gap, now_ms(), 0)] if gap is not None else [])

    def log_pareto(self, front: Sequence, objectives: Sequence) -> None:
        """A multi-objective study's Pareto front: ``pareto_front.json`` on the study's run, its trials' runs tagged."""
        rows = [{"trial": t.number, "run_id": t.mlflow_run_id, "params": t.params, **t.objectives} for t in front]
        self.client.log_dict(self.run_id, {"objectives": [f"{o.metric}:{o.mode}" for o in objectives],
                                           "front": rows}, "pareto_front.json")
        for trial in front:
            if trial.mlflow_run_id:
                self.client.set_tag(trial.mlflow_run_id, "hpo.pareto", "true")

    def mark_started(self, run_id: str, ray_trial_id: str, resumed_after_epoch: int | None) -> None:
        """The Ray trial now running it, and the epoch it continues after when it resumed."""
        tags = {TRIAL_ID_TAG: ray_trial_id}
        if resumed_after_epoch is not None:
            tags["hpo.resumed_after_epoch"] = str(resumed_after_epoch)
        self.tag(run_id, **tags)

    def tag_node(self, run_id: str, node_id: str, node_ip: str | None) -> None:
        self.tag(run_id, **{NODE_TAG: node_id, "hpo.node_ip": str(node_ip)})

    def tag(self, run_id: str, **tags: str) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_epoch(self, run_id: str, epoch: int, result: dict[str, float]) -> None:
        keys = reported_metrics(result) if task_info(self.spec.task).user_function else LOGGED_METRICS
        system = [k for k in result if k.startswith(SYSTEM_PREFIX) and k not in keys]
        self.client.log_batch(run_id, metrics=metrics_at(result, epoch, [*keys, *system]))

    def logged_epochs(self, run_id: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, self.spec.objective.metric)}

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def close_trial_run(self, run_id: str, state: TrialState, checkpoint: str | None, reason: str | None = None,
                        evaluation: dict | None = None, figures: Sequence[Path] = (),
                        error: str | None = None) -> None:
        """Tags the trial's outcome, logs its best epoch's per-class results (``evaluation/``: the JSON and
        ``figures`` drawn from it, such as the confusion matrix), uploads its best model (``checkpoint/``) and ends
        the run."""
        tags = {STATUS_TAG: state.value} | ({FAIL_REASON_TAG: reason} if reason else {})
        self.tag(run_id, **tags)
        if error:  # the trial raised: its traceback, beside the run's failure tags
            self.client.log_text(run_id, error, "error.txt")
        if evaluation:
            self.client.log_dict(run_id, evaluation, f"{EVALUATION_DIR}/per_class.json")
        for figure in figures:
            self.client.log_artifact(run_id, str(figure), EVALUATION_DIR)
        if checkpoint and not self.client.list_artifacts(run_id, "checkpoint") \
                and self.store.is_dir(best_model(checkpoint)):
            with self.store.full_model(best_model(checkpoint)) as folder:
                self.client.log_artifacts(run_id, str(folder), "checkpoint")
        self.client.set_terminated(run_id, RUN_STATUS[state])
