"""``hpo ensemble``: a study's top trials as one model, their outputs combined by the task (class probabilities
averaged; predictions averaged for regression).

Why: the search trains many good models and keeps one; averaging a few of the best usually beats the best alone
(members err on different rows), at K times the inference cost. The ensemble is evaluated on the study's
validation split beside its best member, so its gain is measured, not assumed; it is logged as its own MLflow
run beside the study's and registered as the study's next version with the alias ``ensemble`` (``champion``
stays the search's). Example::

    hpo ensemble sst2_minilm --top 3
    mlflow.pyfunc.load_model("models:/sst2_minilm@ensemble").predict(["a gorgeous film"])
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpo.config.model_choice import StudyData, rows_of, trial_data, with_models_of
from hpo.config.spec import StudySpec
from hpo.models.refit import refit_spec
from hpo.stores.model_runs import EnsembleRun
from hpo.stores.registry import Registry, RegistryError
from hpo.stores.tracking import client as tracking_client
from trainers.tasks import load_task


@dataclass(frozen=True)
class EnsembleResult:
    members: list[tuple[int, float]]  # (trial number, its validation value) best first
    metrics: dict[str, float]  # the ensemble's on validation
    best_member: dict[str, float]  # the best member's, measured the same way
    model_uri: str


def ensemble_top(registry: Registry, name: str, top: int, prepare: Callable[[StudySpec], StudyData],
                 log: Callable[[str], None] = print) -> EnsembleResult:
    """Combines the outputs of the study's ``top`` best trials that have a model in MLflow, evaluates the
    average on the validation split beside the best member, and logs and registers it (:class:`EnsembleRun`)."""
    record = registry.require(name)
    spec = refit_spec(record, [], [registry.url])
    client = tracking_client(spec.storage.tracking_uri)
    finished = [t for t in registry.trials(name) if t.state.has_result]
    members = [t for t in spec.objective.ranked(finished, key=lambda t: t.best_metric)
               if t.mlflow_run_id and client.list_artifacts(t.mlflow_run_id, "checkpoint")][:top]
    if len(members) < 2:
        raise RegistryError(f"study {name!r} has {len(members)} finished trial(s) with a model in MLflow; an "
                            "ensemble needs at least 2 (run more trials, or keep pruned ones with storage.keep=all)")
    data = prepare(with_models_of(spec, [t.params or {} for t in members]))
    log(f"ensemble of {name}: trials {[t.number for t in members]} on {len(rows_of(data).validation)} validation "
        "rows")
    run = EnsembleRun(spec, record, members)
    task = load_task(spec.task)
    try:
        with tempfile.TemporaryDirectory(prefix="hpo-ensemble-") as tmp:
            folders, outputs = [], []
            for trial in members:
                folder = Path(client.download_artifacts(trial.mlflow_run_id, "checkpoint", f"{tmp}/{trial.number}"))
                rows = trial_data(data, trial.params)  # as its own model reads them, when the model was searched
                member, targets = task.validation_outputs(folder, rows, spec.trainer.eval_batch_size)
                folders.append(folder)
                outputs.append(member)
            metrics = task.metrics(task.combine(outputs), targets)
            best = task.metrics(outputs[0], targets)
            uri = run.finish(folders, metrics, best, register=spec.register_best)
    except BaseException:
        run.fail()
        raise
    return EnsembleResult([(t.number, t.best_metric) for t in members], metrics, best, uri)
