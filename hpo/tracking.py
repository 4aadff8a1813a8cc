"""MLflow tracking: one experiment per study, a parent run for the study, a nested run per trial.

Trials are logged from the driver by a Ray Tune callback, so trial processes need no MLflow
access. A trial's identity is its Optuna trial number: the registry maps it to exactly one MLflow
run (also tagged ``hpo.optuna_trial_number``), so a resumed trial continues its run instead of
opening a second one.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray import tune

from hpo.checkpoints import CheckpointStore
from hpo.config import StudySpec
from hpo.registry import Registry
from hpo.search_space import HYPERPARAMETERS
from hpo.stopping import StudyStopper
from hpo.trial import NODE_KEY, OOM_KEY, RESUME_KEY, TRIAL_NUMBER_KEY

TRIAL_ID_TAG = "hpo.ray_trial_id"
TRIAL_NUMBER_TAG = "hpo.optuna_trial_number"
NODE_TAG = "hpo.ray_node_id"  # where the trial's latest attempt ran (with hpo.node_ip)
STATUS_TAG = "hpo.trial_status"  # completed | pruned | failed | interrupted
FAIL_REASON_TAG = "hpo.fail_reason"  # oom | error
_LOGGED_METRICS = ("val_loss", "val_accuracy", "val_f1_macro", "val_auc", "train_loss", "lr",
                   "train_examples_per_s", "time_this_iter_s", "micro_batch_size", "grad_accumulation")


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in sorted(values.items())]


def _now_ms() -> int:
    return int(time.time() * 1000)


class StudyRun:
    """The study's MLflow experiment and parent run (reopened, not recreated, on resume)."""

    def __init__(self, spec: StudySpec, store: CheckpointStore, parent_run_id: str | None = None) -> None:
        self.spec, self.store = spec, store
        self.client = MlflowClient(tracking_uri=spec.tracking_uri)
        experiment = self.client.get_experiment_by_name(spec.name)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            location = None
            if spec.tracking_uri.startswith("sqlite:"):  # a local store: keep artifacts beside it
                location = (spec.storage_root / "mlartifacts" / spec.name).as_uri()
            self.experiment_id = self.client.create_experiment(spec.name, artifact_location=location)
        if parent_run_id is not None:
            self.run_id = parent_run_id
            self.client.update_run(parent_run_id, status="RUNNING")
            return
        run = self.client.create_run(
            self.experiment_id, run_name=spec.name, tags={"hpo.study": spec.name, "hpo.role": "study"}
        )
        self.run_id = run.info.run_id
        self.client.log_text(self.run_id, spec.config_yaml, "study_config.yaml")
        self.client.log_dict(self.run_id, spec.space.describe(), "search_space.json")
        self.client.log_batch(
            self.run_id,
            params=_params({f"space.{k}": v for k, v in spec.space.describe().items()}
                           | {"num_samples": spec.num_samples, "metric": spec.metric, "mode": spec.mode,
                              "sampler": type(spec.sampler).__name__, "scheduler": type(spec.scheduler).__name__}),
        )

    def finish(self, best: dict[str, Any] | None, status: str, stop_reason: str | None) -> None:
        """Records the best trial and why the study ended on the parent run, and closes it."""
        if best is not None:  # tags, not params: a resumed study may find a new best, and params are immutable
            tags = {f"best.{k}": str(v) for k, v in best["params"].items()}
            tags |= {"hpo.best_trial_number": str(best["number"]), "hpo.best_run_id": best.get("run_id") or ""}
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(f"best_{self.spec.metric}", best["value"], _now_ms(), 0)],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
        if stop_reason:
            self.client.set_tag(self.run_id, "hpo.stop_reason", stop_reason)
        self.client.set_terminated(self.run_id, status)

    def log_best_model(self, checkpoint_dir: Path) -> str:
        """Logs the best checkpoint (a local folder) as a pyfunc model under the parent run; registers it.
        Returns its URI."""
        import mlflow

        from hpo.export import TextClassifierModel

        mlflow.set_tracking_uri(self.spec.tracking_uri)
        # mlflow warns that a pickled python_model runs code on load; ours is this package's own class.
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        with mlflow.start_run(run_id=self.run_id):
            info = mlflow.pyfunc.log_model(
                name="best_model",
                python_model=TextClassifierModel(),
                artifacts={"checkpoint": str(checkpoint_dir)},
                registered_model_name=self.spec.name if self.spec.register_best else None,
                pip_requirements=["torch==2.13.0", "transformers==5.23.0", "pandas", "hpo"],
            )
        if info.registered_model_version is not None:
            return f"models:/{self.spec.name}/{info.registered_model_version}"
        return info.model_uri

    def log_optuna_plots(self, study) -> None:
        """Optimization history and parameter importances, as interactive HTML on the parent run."""
        import optuna.visualization as vis

        plots = {"optimization_history": vis.plot_optimization_history}
        if len(study.trials) >= 3:
            plots["param_importances"] = vis.plot_param_importances
        for name, plot in plots.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # importances on few, equal trials: a warning, not news
                    html = plot(study).to_html(include_plotlyjs="cdn")
            except (ValueError, RuntimeError):  # too few completed trials for importances
                continue
            self.client.log_text(self.run_id, html, f"plots/{name}.html")

    def find_trial_run(self, number: int) -> str | None:
        """The child run of Optuna trial ``number``, if MLflow already has one."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TRIAL_NUMBER_TAG}` = '{number}' and tags.`mlflow.parentRunId` = '{self.run_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def close_trial_run(self, run_id: str, status: str, checkpoint: str | None, reason: str | None = None) -> None:
        """Tags the trial's outcome, uploads its best model (``checkpoint/``) and ends the run."""
        self.client.set_tag(run_id, STATUS_TAG, status)
        if reason:
            self.client.set_tag(run_id, FAIL_REASON_TAG, reason)
        best = f"{checkpoint}/best"
        if checkpoint and not self.client.list_artifacts(run_id, "checkpoint") and self.store.is_dir(best):
            with self.store.local_copy(best) as folder:
                self.client.log_artifacts(run_id, str(folder), "checkpoint")
        run_status = {"failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")
        self.client.set_terminated(run_id, run_status)


class TrialRuns(tune.Callback):
    """A Ray Tune callback: one nested MLflow run per trial, per-epoch metrics, registry bookkeeping."""

    def __init__(self, study: StudyRun, registry: Registry, stopper: StudyStopper) -> None:
        self.study, self.registry, self.stopper = study, registry, stopper
        self.spec = study.spec
        self.client = study.client
        self.numbers: dict[str, int] = {}  # ray trial id -> Optuna trial number
        self.run_ids: dict[int, str] = {}
        self.epochs: dict[int, int] = {}
        self.bests: dict[int, float] = {}
        self.checkpoints: dict[int, str] = {}
        self.placed: set[str] = set()  # ray trial ids whose node is tagged

    def __getstate__(self) -> dict:
        """Ray pickles its run config into tuner.pkl (hpo resumes from its own stores, never from that)."""
        return {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        number = int(trial.config[TRIAL_NUMBER_KEY])
        self.numbers[trial.trial_id] = number
        record = self.registry.trial(self.spec.name, number)
        run_id = (record.mlflow_run_id if record else None) or self.study.find_trial_run(number)
        params = {k: v for k, v in trial.config.items() if k in HYPERPARAMETERS}
        reopened = run_id is not None
        if not reopened:
            run = self.client.create_run(
                self.study.experiment_id,
                run_name=f"trial_{number:04d}",
                tags={"mlflow.parentRunId": self.study.run_id, TRIAL_NUMBER_TAG: str(number),
                      TRIAL_ID_TAG: trial.trial_id, "hpo.study": self.spec.name},
            )
            run_id = run.info.run_id
            fixed = {k: v for k, v in self.spec.trainer.items() if k != "model_name_or_path"}
            self.client.log_batch(run_id, params=_params({**fixed, **self.spec.space.fixed, **params}))
        self.run_ids[number] = run_id
        self.epochs[number] = 0
        if record and record.best_metric is not None:
            self.bests[number] = record.best_metric
        self.registry.upsert_trial(self.spec.name, number, state="running", params=params,
                                   ray_trial_id=trial.trial_id, mlflow_run_id=run_id, ray_trial_dir=trial.path)
        verb = self._reopen(number, run_id, trial) if reopened else "started"
        print(f"[{self.spec.name}] trial {number} {verb}: {_short(params)}", flush=True)

    def _reopen(self, number: int, run_id: str, trial) -> str:
        """Continues an interrupted trial's run: MLflow's own history says which epochs are logged, and
        the epoch of the checkpoint it resumes from is logged from that checkpoint if the crash beat it."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, TRIAL_ID_TAG, trial.trial_id)
        history = self.client.get_metric_history(run_id, self.spec.metric)
        self.epochs[number] = max((m.step for m in history), default=0)
        checkpoint = trial.config.get(RESUME_KEY)
        resumed_after = 0
        if checkpoint:
            self.checkpoints[number] = checkpoint
            summary = self.study.store.read_summary(checkpoint)
            resumed_after = summary["epoch"]
            self._record_epoch(number, summary["metrics"], resumed_after)
        self.client.set_tag(run_id, "hpo.resumed_after_epoch", str(resumed_after))
        return f"resumed after epoch {resumed_after}"

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        number = self.numbers.get(trial.trial_id)
        if number is not None and trial.trial_id not in self.placed and NODE_KEY in result:
            self.placed.add(trial.trial_id)
            self.client.log_batch(self.run_ids[number], tags=[RunTag(NODE_TAG, str(result[NODE_KEY])),
                                                              RunTag("hpo.node_ip", str(result.get("node_ip")))])
        if number is not None and self._record_epoch(number, result, int(result.get("epoch", 0))):
            value = result.get(self.spec.metric, float("nan"))
            print(f"[{self.spec.name}] trial {number} epoch {int(result['epoch'])}: {self.spec.metric}={value:.4f}",
                  flush=True)

    def _record_epoch(self, number: int, result: dict, epoch: int) -> bool:
        """Logs one epoch's metrics once; an epoch logged before an interruption is never logged again."""
        if epoch <= self.epochs.get(number, 0):
            return False
        metrics = [Metric(k, float(result[k]), _now_ms(), epoch) for k in _LOGGED_METRICS if k in result]
        self.client.log_batch(self.run_ids[number], metrics=metrics)
        value = result.get(self.spec.metric)
        best = self.bests.get(number)
        if value is not None and (best is None or (value > best if self.spec.mode == "max" else value < best)):
            self.bests[number] = best = value
        self.epochs[number] = epoch
        self.registry.upsert_trial(self.spec.name, number, epochs=epoch, last_metric=value, best_metric=best)
        return True

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        number = self.numbers.get(trial.trial_id)
        if number is None:
            return
        self.checkpoints[number] = checkpoint.path
        self.registry.upsert_trial(self.spec.name, number, checkpoint=checkpoint.path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        number = self.numbers.get(trial.trial_id)
        if number is None:
            return  # stopped before it started: nothing was logged
        last = trial.last_result or {}
        if last.get(OOM_KEY):
            self._close(number, "failed", reason="oom")
            return
        if self.stopper.user_stop.is_set():
            status = "interrupted"
        elif self.epochs.get(number, 0) >= self.spec.trainer["max_epochs"] or last.get("early_stopped"):
            status = "completed"
        else:
            status = "pruned"
        self._close(number, status)
        if status != "interrupted":
            self.stopper.trial_finished(self.bests.get(number))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.numbers:
            self._close(self.numbers[trial.trial_id], "failed", reason="error")

    def _close(self, number: int, status: str, reason: str | None = None) -> None:
        self.study.close_trial_run(self.run_ids[number], status, self.checkpoints.get(number), reason)
        self.registry.upsert_trial(self.spec.name, number, state=status, fail_reason=reason)
        why = f" ({reason})" if reason else ""
        print(f"[{self.spec.name}] trial {number} {status}{why} after {self.epochs.get(number, 0)} epoch(s)",
              flush=True)


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
