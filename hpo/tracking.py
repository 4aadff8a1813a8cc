"""MLflow tracking: one experiment per study, a parent run for the study, a nested run per trial.

Trials are logged from the driver by a Ray Tune callback, so trial processes need no MLflow
access. Each child run carries the tag ``hpo.ray_trial_id``: the trial -> run mapping can be
recovered from MLflow alone (a resumed study finds its runs instead of creating new ones).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from ray import tune

from hpo.config import StudySpec

TRIAL_ID_TAG = "hpo.ray_trial_id"
STATUS_TAG = "hpo.trial_status"  # completed | pruned | failed
_LOGGED_METRICS = ("val_loss", "val_accuracy", "val_f1_macro", "val_auc", "train_loss", "lr",
                   "train_examples_per_s", "time_this_iter_s")


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in sorted(values.items())]


class StudyRun:
    """The study's MLflow experiment and parent run."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.tracking_uri)
        experiment = self.client.get_experiment_by_name(spec.name)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            location = None
            if spec.tracking_uri.startswith("sqlite:"):  # a local store: keep artifacts beside it
                location = (spec.storage_root / "mlartifacts" / spec.name).as_uri()
            self.experiment_id = self.client.create_experiment(spec.name, artifact_location=location)
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

    def trial_callback(self) -> TrialRuns:
        return TrialRuns(self)

    def finish(self, best: dict[str, Any] | None, status: str = "FINISHED") -> None:
        """Records the best trial on the parent run and closes it."""
        if best is not None:
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(f"best_{self.spec.metric}", best["value"], int(time.time() * 1000), 0)],
                params=_params({f"best.{k}": v for k, v in best["params"].items()}),
                tags=[],
            )
            self.client.set_tag(self.run_id, "hpo.best_trial_id", best["trial_id"])
            self.client.set_tag(self.run_id, "hpo.best_run_id", best.get("run_id", ""))
        self.client.set_terminated(self.run_id, status)

    def log_best_model(self, checkpoint_dir: Path) -> str:
        """Logs the best checkpoint as a pyfunc model under the parent run; registers it. Returns its URI."""
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
                html = plot(study).to_html(include_plotlyjs="cdn")
            except (ValueError, RuntimeError):  # too few completed trials for importances
                continue
            self.client.log_text(self.run_id, html, f"plots/{name}.html")


class TrialRuns(tune.Callback):
    """A Ray Tune callback: one nested MLflow run per trial, per-epoch metrics, best checkpoint."""

    def __init__(self, study: StudyRun) -> None:
        self.study = study
        self.client = study.client
        self.run_ids: dict[str, str] = {}
        self.checkpoints: dict[str, tune.Checkpoint] = {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        spec = self.study.spec
        run = self.client.create_run(
            self.study.experiment_id,
            run_name=f"trial_{trial.trial_id}",
            tags={"mlflow.parentRunId": self.study.run_id, TRIAL_ID_TAG: trial.trial_id, "hpo.study": spec.name},
        )
        self.run_ids[trial.trial_id] = run.info.run_id
        fixed = {k: v for k, v in spec.trainer.items() if k not in ("model_name_or_path",)}
        self.client.log_batch(run.info.run_id, params=_params({**fixed, **spec.space.fixed, **trial.config}))
        print(f"[{spec.name}] trial {trial.trial_id} started: {_short(trial.config)}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self.run_ids[trial.trial_id]
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, step) for k in _LOGGED_METRICS if k in result]
        self.client.log_batch(run_id, metrics=metrics)
        metric = self.study.spec.metric
        value = result.get(metric, float("nan"))
        print(f"[{self.study.spec.name}] trial {trial.trial_id} epoch {step}: {metric}={value:.4f}", flush=True)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.checkpoints[trial.trial_id] = checkpoint  # the trainer only checkpoints improvements

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        finished = last.get("epoch", 0) >= self.study.spec.trainer["max_epochs"] or last.get("early_stopped")
        status = "completed" if finished else "pruned"
        self._close(trial, status, RunStatus.to_string(RunStatus.FINISHED))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._close(trial, "failed", RunStatus.to_string(RunStatus.FAILED))

    def _close(self, trial, status: str, run_status: str) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        self.client.set_tag(run_id, STATUS_TAG, status)
        checkpoint = self.checkpoints.get(trial.trial_id)
        if checkpoint is not None:
            with checkpoint.as_directory() as local:
                self.client.log_artifacts(run_id, local, "checkpoint")
        self.client.set_terminated(run_id, run_status)
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        print(f"[{self.study.spec.name}] trial {trial.trial_id} {status} after {epochs} epoch(s)", flush=True)


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
