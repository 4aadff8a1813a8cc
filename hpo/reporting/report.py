"""The study report: what a study found, in one folder a person can open anywhere.

Written at the end of every study (into ``<storage.root>/<study>/report/`` and onto the study's MLflow run
under ``report/``) and on demand by ``hpo report NAME [--to DIR]``:

- ``report.md``: the best trial, the top five, parameter importances, why the study stopped, epochs and
  driver time spent and the epochs early stopping saved, with the PNGs inline;
- ``*.png``: optimization history, parameter importances, parallel coordinates, slices, learning curves;
- ``report.html``: the same, interactive, self-contained (plotly.js inlined once: opens on an offline cluster).

Read-only over the registry and the Optuna study (:func:`hpo.reporting.plots.finished_study` plots a copy).
Example::

    report = build_report(registry, "sst2_minilm")
    write_report(report, Path("runs/sst2_minilm/report"))
"""

from __future__ import annotations

import html
import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from mlflow.exceptions import MlflowException

from hpo.config.compose import stored_config, stored_storage
from hpo.ranking import ConfirmationSummary, pareto_front, summary_of
from hpo.reporting._distillation import ModelRow, comparison, comparison_lines, distillation_pair
from hpo.reporting._model_costs import ModelCost, model_cost_lines, model_costs
from hpo.reporting.plots import finished_study, plotly_figures, write_pngs
from hpo.reporting.summary import format_params
from hpo.secrets import restore
from hpo.states import TrialState
from hpo.stores.registry import Registry, StudyRecord, TrialRecord
from hpo.stores.tracking import EVALUATION_DIR
from hpo.stores.tracking import client as tracking_client
from trainers.objective import Objective

TOP = 5
FEW_TRIALS = 20  # below this, importances are flagged as unstable
_TITLES = {"optimization_history": "Optimization history", "param_importances": "Parameter importances",
           "parallel_coordinate": "Parallel coordinates", "slice": "Slices", "learning_curves": "Learning curves"}


@dataclass
class StudyReport:
    """Everything the report shows, read once from the stores."""

    record: StudyRecord
    trials: list[TrialRecord]
    objective: Objective
    max_epochs: int
    study: optuna.Study  # finished trials at their best epoch (see hpo.reporting.plots.finished_study)
    confirmation: ConfirmationSummary | None = None  # confirm.top_k's reruns, when the study ran them
    evaluation: dict | None = None  # the winner's per-class results at its best epoch (trainers.metrics.per_class)
    objectives: tuple[Objective, ...] = ()  # a multi-objective study's (study.objectives), the primary first
    model_costs: list[ModelCost] = field(default_factory=list)  # per searched model (search.model)
    distillation: list[ModelRow] = field(default_factory=list)  # teacher, plain and distilled student

    @property
    def winner(self) -> TrialRecord | None:
        """The study's recorded best trial (the confirmed winner when confirmation ran), else the best so far."""
        chosen = [t for t in self.trials if t.number == self.record.best_trial_number]
        return chosen[0] if chosen else self.ranked[0] if self.ranked else None

    @property
    def ranked(self) -> list[TrialRecord]:
        finished = [t for t in self.trials if t.state.has_result]
        return self.objective.ranked(finished, key=lambda t: t.best_metric)

    @property
    def epochs_trained(self) -> int:
        return sum(t.epochs for t in self.trials)

    @property
    def epochs_saved(self) -> int:
        """Epochs the finished trials would have trained without early stopping, minus what they trained."""
        finished = [t for t in self.trials if t.state.finished]
        return sum(self.max_epochs - t.epochs for t in finished)

    def importances(self) -> dict[str, float]:
        """Optuna's default (fANOVA) importances over the finished trials; empty when they cannot be computed."""
        if len(self.study.trials) < 3:
            return {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return dict(optuna.importance.get_param_importances(self.study))
        except (ValueError, RuntimeError):
            return {}


def build_report(registry: Registry, name: str) -> StudyReport:
    """Reads the study's registry record, trials and Optuna study."""
    record = registry.require(name)
    trials = registry.trials(name)
    objective = Objective(record.metric, record.mode)
    # The registry keeps the URL masked (hpo.secrets); the password is the registry's own where they share a server.
    assert record.optuna_url, "every study records its Optuna storage when it is created"
    stored = optuna.load_study(study_name=name, storage=restore(record.optuna_url, [registry.url]))
    cfg = stored_config(record.config_yaml)
    confirmation = summary_of(trials, registry.confirmations(name), objective, int(cfg.confirm.top_k),
                              str(cfg.confirm.rank_by)) if cfg.confirm.top_k else None
    report = StudyReport(record, trials, objective, int(cfg.trainer.max_epochs),
                         finished_study(stored, trials, objective.direction), confirmation)
    tracking_uri = stored_storage(record, [registry.url]).tracking_uri
    report.evaluation = _evaluation(tracking_uri, report.winner)
    report.model_costs = model_costs(trials, objective, tracking_uri)
    if pair := distillation_pair(registry, tracking_uri, record):
        report.distillation = comparison(registry, tracking_uri, *pair)
    given = cfg.study.get("objectives") or []
    report.objectives = tuple(Objective(*str(o).split(":", 1)) for o in given)
    return report


def _evaluation(tracking_uri: str, trial: TrialRecord | None) -> dict | None:
    """The trial's per-class results, from its MLflow run (logged when it ended); None when it has none."""

    if trial is None or not trial.mlflow_run_id:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="hpo-report-") as tmp:
            client = tracking_client(tracking_uri)
            path = client.download_artifacts(trial.mlflow_run_id, f"{EVALUATION_DIR}/per_class.json", tmp)
            return json.loads(Path(path).read_text())
    except (MlflowException, OSError, ValueError):
        return None


def report_study(registry: Registry, name: str, folder: Path, mlflow, log: Callable[[str], None]) -> None:
    """The study report into ``folder`` and onto its MLflow run, at the study's end. A derived view: a failure to
    draw it is reported and never fails the study (``hpo report`` draws it again)."""
    try:
        write_report(build_report(registry, name), folder)
        mlflow.log_report(folder)
    except Exception as err:  # noqa: BLE001 - any plotting error: the study's records are already whole
        log(f"report not written ({type(err).__name__}: {err}); try `hpo report {name}`")
        return
    log(f"report: {folder / 'report.md'} (and report.html, PNGs; in MLflow under report/)")


def write_report(report: StudyReport, out: Path) -> list[Path]:
    """Writes the PNGs, ``report.md`` and ``report.html`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = write_pngs(report.study, report.trials, report.objective.metric, out)
    (out / "report.md").write_text(markdown(report, [p.name for p in pngs.values()]))
    (out / "report.html").write_text(page(report))
    return [*pngs.values(), out / "report.md", out / "report.html"]


def _facts(r: StudyReport) -> list[str]:
    s = r.record
    counts = {state: sum(t.state == state for t in r.trials) for state in TrialState}
    trials = ", ".join(f"{n} {state.value}" for state, n in counts.items() if n)
    possible = sum(t.state.finished for t in r.trials) * r.max_epochs
    saved = f" ({r.epochs_saved / possible:.0%})" if possible else ""
    return [f"status: **{s.status.value}**" + (f", {s.stop_reason}" if s.stop_reason else ""),
            f"trials: {trials} (of {s.num_samples})",
            f"epochs trained: {r.epochs_trained}; early stopping saved {r.epochs_saved} of {possible} epochs{saved}",
            f"driver time: {s.elapsed_s / 60:.1f} min",
            f"MLflow: experiment {s.mlflow_experiment_id}, study run {s.mlflow_parent_run_id}"]


def _cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _top_rows(r: StudyReport) -> tuple[list[str], list[list[str]]]:
    keys = sorted({k for t in r.ranked[:TOP] for k in (t.params or {})})
    header = ["rank", "trial", "state", r.objective.metric, "epochs", *keys]
    rows = [[str(i), str(t.number), t.state.value, f"{t.best_metric:.4f}", str(t.epochs),
             *(_cell((t.params or {}).get(k, "-")) for k in keys)] for i, t in enumerate(r.ranked[:TOP], 1)]
    return header, rows


def _per_class_lines(evaluation: dict | None) -> list[str]:
    if not evaluation:
        return []
    if evaluation.get("kind") == "regression":
        true, predicted = evaluation["true"], evaluation["predicted"]
        worst = max(range(len(true)), key=lambda i: abs(predicted[i] - true[i]))
        return [f"### Predicted against true (epoch {evaluation.get('epoch', '?')})", "",
                f"{len(true)} validation rows; the scatter is `evaluation/predicted_vs_true.png` in the trial's MLflow "
                f"run. Largest miss: row {worst}, true {true[worst]:.3g}, predicted {predicted[worst]:.3g}.", ""]
    labels, matrix = evaluation["labels"], evaluation["confusion_matrix"]
    lines = [f"### Per class (epoch {evaluation.get('epoch', '?')})", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
              for name, c in evaluation["per_class"].items()]
    lines += ["", "Confusion matrix (rows: true label, columns: predicted):", "", "| | " + " | ".join(labels) + " |",
              "|---|" + "---|" * len(labels), *(f"| **{labels[i]}** | " + " | ".join(map(str, row)) + " |"
                                                 for i, row in enumerate(matrix)), ""]
    return lines


def _pareto_lines(r: StudyReport) -> list[str]:
    """A multi-objective study's Pareto front: no listed trial is beaten on every objective by another."""
    if len(r.objectives) < 2:
        return []
    front = pareto_front(r.trials, r.objectives)
    names = [f"{o.metric} ({o.mode})" for o in r.objectives]
    lines = ["## Pareto front", "", f"{len(front)} completed trial(s) that no other beats on every objective "
             "(costs at the least measured; the rest at the best epoch of the first):", "",
             "| trial | " + " | ".join(names) + " | params |", "|---|" + "---|" * (len(names) + 1)]
    lines += [f"| {t.number} | " + " | ".join(_cell(t.objectives[o.metric]) for o in r.objectives)
              + f" | {format_params(t.params or {})} |" for t in front]
    return lines + [""]


def _confirmation_lines(r: StudyReport) -> list[str]:
    """The confirmation stage: each top config's search value against its mean over further seeds."""
    c = r.confirmation
    if c is None:
        return []
    lines = ["## Confirmation", "", "The top configs trained again on further seeds; the winner is chosen by "
             "its mean there (the search's own run, the one selection favoured, is not counted).", "",
             "| trial | search value | confirmed mean | sd | seeds |", "|---|---|---|---|---|"]
    for config in c.configs:
        mean = f"{config.mean:.4f}" if config.mean is not None else "-"
        mark = " (winner)" if config.trial_number == c.winner else ""
        lines.append(f"| {config.trial_number}{mark} | {config.search_value:.4f} | {mean} | {config.sd:.4f} | "
                     f"{len(config.values)} |")
    gap = c.optimism_gap
    lines += ["", c.describe() + ".", ""] + ([f"Optimism gap: **{gap:+.4f}**.", ""] if gap is not None else [])
    return lines


def markdown(r: StudyReport, images: list[str]) -> str:
    """The one-page summary."""
    s = r.record
    lines = [f"# Study `{s.name}`", "", *(f"- {fact}" for fact in _facts(r)), ""]
    best = r.winner
    if best:
        at = min((e for e, v in best.values.items() if v == best.best_metric), default=best.epochs)
        lines += ["## Best trial", "", f"Trial {best.number} ({best.state.value}): **{r.objective.metric} = "
                  f"{best.best_metric:.4f}** at epoch {at} of {best.epochs}; MLflow run `{best.mlflow_run_id}`.",
                  "", "| param | value |", "|---|---|",
                  *(f"| {k} | {_cell(v)} |" for k, v in sorted((s.best_params or best.params or {}).items())), ""]
        if s.best_model_uri:
            lines += [f"Registered model: `{s.best_model_uri}`; the study's best version carries the alias "
                      f"`champion` (`models:/{s.name}@champion`).", ""]
        lines += _per_class_lines(r.evaluation)
        lines += _confirmation_lines(r)
        lines += model_cost_lines(r.model_costs, r.objective)
        lines += comparison_lines(r.distillation, r.objective.metric)
        lines += _pareto_lines(r)
        header, rows = _top_rows(r)
        lines += [f"## Top {len(rows)}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                  *("| " + " | ".join(row) + " |" for row in rows), ""]
    else:
        lines += ["No trial finished with a result yet.", ""]
    if importances := r.importances():
        lines += [f"## Parameter importances (fANOVA over {len(r.study.trials)} finished trials)", "",
                  "| param | importance |", "|---|---|",
                  *(f"| {k} | {v:.3f} |" for k, v in importances.items()), ""]
        if len(r.study.trials) < FEW_TRIALS:
            lines += [f"With fewer than {FEW_TRIALS} trials these are a rough guide: a random forest fitted to a "
                      "handful of points ranks parameters unstably.", ""]
    lines += ["## Plots", "", "Optuna's plots count every finished trial at its best epoch (a pruned trial's best "
              "is the value it reached before it was stopped).", ""]
    for image in images:
        lines += [f"### {_TITLES.get(Path(image).stem, image)}", "", f"![{Path(image).stem}]({image})", ""]
    lines += ["", "## Open it", "", f"- MLflow UI: `hpo ui {s.name} --open`",
              f"- Optuna dashboard: `optuna-dashboard {s.optuna_url}`",
              "- Interactive plots: `report.html` beside this file (no network needed)", ""]
    return "\n".join(lines)


def page(r: StudyReport) -> str:
    """``report.html``: the facts, the top five and every plot, with plotly.js inlined once (no CDN)."""
    s = r.record
    parts = [f"<h1>Study {html.escape(s.name)}</h1><ul>"
             + "".join(f"<li>{html.escape(f.replace('**', ''))}</li>" for f in _facts(r)) + "</ul>"]
    if r.ranked:
        header, rows = _top_rows(r)
        parts.append(f"<h2>Top {len(rows)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                     + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                         for row in rows) + "</table>")
        parts.append(f"<p>Best params: <code>{html.escape(format_params(s.best_params or {}))}</code></p>")
    figures = plotly_figures(r.study, r.trials, r.objective.metric)
    for i, (name, figure) in enumerate(figures.items()):
        parts.append(f"<h2>{_TITLES.get(name, name)}</h2>"
                     + figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hpo report: {html.escape(s.name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
