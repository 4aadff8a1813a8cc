"""Teacher, plain student and distilled student side by side: the report's "Distillation" section.

A distillation study (``distill.teacher``, ``hpo distill``) exists to answer one question: how much of the large
model's accuracy does the small one keep, at what cost per prediction? Both studies' reports show the same table,
derived from the stores each time it is drawn: the teacher's best trial, the plain student (the teacher study's best
trial of the student's model, when it searched that model) and the distilled student, each with its objective and
the ``latency_ms`` and ``model_mb`` its trial measured at that epoch.

    >>> rows = [ModelRow("teacher", "t", "mpnet_base", 0, {"val_accuracy": 0.90, "latency_ms": 9.0}),
    ...         ModelRow("plain student", "t", "minilm_l6", 1, {"val_accuracy": 0.80, "latency_ms": 2.0}),
    ...         ModelRow("distilled student", "s", "minilm_l6", 3, {"val_accuracy": 0.86, "latency_ms": 2.0})]
    >>> comparison_lines(rows, "val_accuracy")[-2]
    'The distilled student recovers **60%** of the gap between the plain student and the teacher.'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException

from hpo.config.compose import stored_config
from hpo.config.search_space import MODEL
from hpo.config.sections import plain_name
from hpo.model_uri import parse as parse_model_uri
from hpo.stores.registry import Registry, StudyRecord, TrialRecord
from hpo.stores.tracking import DISTILLED, STUDENT_STUDY_TAG, model_version
from hpo.stores.tracking import client as tracking_client
from trainers.objective import Objective

COSTS = ("latency_ms", "model_mb")


@dataclass(frozen=True)
class ModelRow:
    """One model of the comparison: where it comes from and what its best trial measured."""

    role: str  # teacher | plain student | distilled student
    study: str
    model: str
    trial: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the objective, latency_ms and model_mb at its best epoch


def comparison(registry: Registry, tracking_uri: str, teacher_study: str, student_study: str) -> list[ModelRow]:
    """Teacher, plain student (the teacher study's best trial of the student's model when it searched it, else the
    plain student study ``hpo distill --with-plain`` ran) and distilled student."""
    teacher, student = registry.require(teacher_study), registry.require(student_study)
    rows = [_teacher_row(registry, tracking_uri, teacher, _teacher_uri(student))]
    student_model = _model_name(student, _best_trial(registry, student))
    if (plain := _best_trial(registry, teacher, student_model)) is not None:
        rows.append(_row(registry, tracking_uri, "plain student", teacher, plain))
    elif (alone := registry.get(plain_name(student.name))) is not None:  # hpo distill --with-plain
        rows.append(study_row(registry, tracking_uri, alone, "plain student"))
    return [*rows, study_row(registry, tracking_uri, student, "distilled student")]


def study_row(registry: Registry, tracking_uri: str, record: StudyRecord, role: str) -> ModelRow:
    """The study's best trial as a row of the comparison."""
    return _row(registry, tracking_uri, role, record, _best_trial(registry, record))


def comparison_lines(rows: Sequence[ModelRow], metric: str) -> list[str]:
    """The report's "Distillation" section (none without rows)."""
    if not rows:
        return []

    def cell(row: ModelRow, key: str, form: str) -> str:
        return format(row.metrics[key], form) if key in row.metrics else "-"

    lines = ["## Distillation", "", "The teacher, the small model trained alone, and trained on the teacher's "
             f"outputs: each one's best trial, its {metric}, and the costs measured at that epoch (latency per "
             "validation row).", "", f"| role | study | model | trial | {metric} | latency_ms | model_mb |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.role} | {r.study} | {r.model} | {'-' if r.trial is None else r.trial} | "
                     f"{cell(r, metric, '.4f')} | {cell(r, 'latency_ms', '.2f')} | {cell(r, 'model_mb', '.1f')} |")
    teacher, student = rows[0].metrics.get(metric), rows[-1].metrics.get(metric)
    plain = rows[1].metrics.get(metric) if len(rows) == 3 else None
    if teacher is not None and student is not None and plain is not None and teacher != plain:
        lines += ["", f"The distilled student recovers **{(student - plain) / (teacher - plain):.0%}** of the gap "
                      "between the plain student and the teacher."]
    return [*lines, ""]


def distillation_pair(registry: Registry, tracking_uri: str, record: StudyRecord) -> tuple[str, str] | None:
    """(teacher study, student study) when ``record`` is either: a study distilled from a study's registered
    version (``distill.teacher``: registered models are named after their studies), or a study whose registered
    model has a ``distilled`` version."""
    if (teacher := _teacher_uri(record)) is not None:
        uri = parse_model_uri(teacher)
        return (uri.name, record.name) if uri and registry.get(uri.name) else None
    try:
        version = tracking_client(tracking_uri).get_model_version_by_alias(record.name, DISTILLED)
    except MlflowException:  # no registered model, or no distilled version
        return None
    student = version.tags.get(STUDENT_STUDY_TAG)
    return (record.name, student) if student and registry.get(student) else None


def _teacher_uri(record: StudyRecord) -> str | None:
    teacher = stored_config(record.config_yaml).distill.teacher
    return None if teacher is None else str(teacher)


def _teacher_row(registry: Registry, tracking_uri: str, teacher: StudyRecord, uri: str | None) -> ModelRow:
    """The version that taught: a search version is its trial; another kind (an ensemble, a refit) the metrics of
    the run that made it; the study's best trial when the version is gone."""
    try:
        version = model_version(tracking_uri, uri) if uri else None
    except MlflowException:
        version = None
    if version is None:
        return study_row(registry, tracking_uri, teacher, "teacher")
    kind = version.tags.get("hpo.kind", "search")
    if kind == "search" and (number := version.tags.get("hpo.trial_number")) is not None:
        return _row(registry, tracking_uri, "teacher", teacher, registry.trial(teacher.name, int(number)))
    metrics = tracking_client(tracking_uri).get_run(version.run_id).data.metrics if version.run_id else {}
    return ModelRow(f"teacher ({kind})", teacher.name, f"version {version.version}", None,
                    {k: metrics[k] for k in (teacher.metric, *COSTS) if k in metrics})


def _best_trial(registry: Registry, record: StudyRecord, model: str | None = None) -> TrialRecord | None:
    """The study's best trial, or its best trial of ``model`` (a ``search.model`` choice)."""
    if model is None:
        return registry.trial(record.name, record.best_trial_number) if record.best_trial_number is not None else None
    trials = [t for t in registry.trials(record.name) if t.state.has_result and (t.params or {}).get(MODEL) == model]
    ranked = Objective(record.metric, record.mode).ranked(trials, key=lambda t: t.best_metric)
    return ranked[0] if ranked else None


def _model_name(record: StudyRecord, trial: TrialRecord | None) -> str:
    """A trial's model as its study names it: the searched ``model`` choice, else the configured model's folder."""
    if trial is not None and (trial.params or {}).get(MODEL):
        return str(trial.params[MODEL])
    folder = Path(str(stored_config(record.config_yaml).model.name_or_path).rstrip("/"))
    return folder.parent.name if folder.name == "model" else folder.name  # a model package's folder: its package


def _row(registry: Registry, tracking_uri: str, role: str, record: StudyRecord, trial: TrialRecord | None) -> ModelRow:
    """``trial``'s objective and costs at its best epoch, read from its MLflow run."""
    model = _model_name(record, trial)
    if trial is None or trial.best_metric is None:
        return ModelRow(role, record.name, model)
    metrics = {record.metric: trial.best_metric}
    best_epoch = min(e for e, v in trial.values.items() if v == trial.best_metric)
    if trial.mlflow_run_id:
        client = tracking_client(tracking_uri)
        for key in COSTS:
            at_best = [m.value for m in client.get_metric_history(trial.mlflow_run_id, key) if m.step == best_epoch]
            metrics |= {key: at_best[-1]} if at_best else {}
    return ModelRow(role, record.name, model, trial.number, metrics)
