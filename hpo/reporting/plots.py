"""The study report's figures, each as a PNG (matplotlib: no browser needed) and as a plotly figure (for the
self-contained HTML page).

Optuna's own plots (history, importances, parallel coordinates, slices) draw COMPLETE trials only, and under
ASHA most trials are pruned. :func:`finished_study` therefore hands them an in-memory copy of the study in
which every finished trial counts at its best epoch (a pruned trial's best is what it reached before it was
stopped): the picture a person wants, without touching the stored study. The learning curves of every trial
(pruned ones cut where they stopped, marked x) are drawn here, as Optuna has no such plot over epochs with
hpo's states.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import optuna.visualization as vis
import optuna.visualization.matplotlib as mvis
import plotly.graph_objects as go
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

from hpo.states import TrialState
from hpo.stores.registry import TrialRecord

_STYLE = {TrialState.COMPLETED: ("tab:blue", "-"), TrialState.PRUNED: ("tab:orange", "--"),
          TrialState.STOPPED: ("tab:purple", "--"), TrialState.FAILED: ("tab:red", ":"),
          TrialState.INTERRUPTED: ("tab:gray", ":"),
          TrialState.RUNNING: ("tab:gray", ":")}


_SIZES = {"parallel_coordinate": (13, 6), "slice": (18, 4.5)}  # inches: one axis per parameter needs width


def finished_study(stored: optuna.Study, trials: list[TrialRecord],
                   direction: Literal["maximize", "minimize"]) -> optuna.Study:
    """An in-memory study with one COMPLETE trial per finished (completed or pruned) trial, valued at its best."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "a new study created in memory" is not news here
    try:
        copy = optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    frozen = {t.number: t for t in stored.get_trials(deepcopy=False)}
    for record in trials:
        source = frozen.get(record.number)
        if source is None or record.best_metric is None or not record.state.has_result:
            continue
        copy.add_trial(optuna.trial.create_trial(
            params=source.params, distributions=source.distributions, value=record.best_metric,
            intermediate_values=dict(record.values), user_attrs={"number": record.number, "state": record.state.value}))
    return copy


def optuna_plots(study: optuna.Study) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """Name -> (matplotlib plot, plotly plot) of Optuna's visualizations that this many trials support (none
    before a trial has a result: Optuna would warn "There are no complete trials" and draw an empty chart)."""
    if not study.trials:
        return {}

    plots: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "optimization_history": (mvis.plot_optimization_history, vis.plot_optimization_history)}
    if len(study.trials) >= 2:
        plots |= {"parallel_coordinate": (mvis.plot_parallel_coordinate, vis.plot_parallel_coordinate),
                  "slice": (mvis.plot_slice, vis.plot_slice)}
    if len(study.trials) >= 3:
        plots["param_importances"] = (mvis.plot_param_importances, vis.plot_param_importances)
    return plots


def write_pngs(study: optuna.Study, trials: list[TrialRecord], metric: str, out: Path) -> dict[str, Path]:
    """Every figure as ``<name>.png`` in ``out``; a plot its trials cannot support is left out."""

    matplotlib.use("Agg")  # files only: no display needed

    written = {}
    for name, (plot, _) in optuna_plots(study).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
                axes = plot(study)
        except (ValueError, RuntimeError):  # e.g. importances over trials whose params never vary
            continue
        figure = _figure_of(axes)
        figure.set_size_inches(*_SIZES.get(name, (8, 5)))
        figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written[name] = out / f"{name}.png"
    figure = learning_curves_png(trials, metric)
    figure.savefig(out / "learning_curves.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    written["learning_curves"] = out / "learning_curves.png"
    return written


def _figure_of(axes):
    """Optuna returns one Axes, or an array of them (slices, one per parameter)."""

    first = np.asarray(axes, dtype=object).ravel()[0]
    return first.figure


def learning_curves_png(trials: list[TrialRecord], metric: str):
    """Each trial's objective per epoch; pruned trials dashed and cut with an x where they stopped."""

    figure, ax = plt.subplots(figsize=(8, 5))
    for record in trials:
        epochs = sorted(record.values)
        if not epochs:
            continue
        color, line = _STYLE[record.state]
        values = [record.values[e] for e in epochs]
        ax.plot(epochs, values, line, color=color, marker="o", markersize=3, alpha=0.8)
        if record.state.cut_short:
            ax.plot(epochs[-1], values[-1], "x", color=color, markersize=9, markeredgewidth=2)
        ax.annotate(str(record.number), (epochs[-1], values[-1]), textcoords="offset points", xytext=(4, 0),
                    fontsize=7, color=color)
    for state, (color, line) in _STYLE.items():
        if any(t.state == state and t.values for t in trials):
            ax.plot([], [], line, color=color, label=state.value)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (pruned and stopped trials cut at x)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return figure


def learning_curves_plotly(trials: list[TrialRecord], metric: str):
    figure = go.Figure()
    for record in trials:
        epochs = sorted(record.values)
        if not epochs:
            continue
        color, line = _STYLE[record.state]
        symbols = ["circle"] * (len(epochs) - 1) + ["x" if record.state.cut_short else "circle"]
        figure.add_trace(go.Scatter(
            x=epochs, y=[record.values[e] for e in epochs], mode="lines+markers",
            name=f"trial {record.number} ({record.state.value})",
            line={"color": color.removeprefix("tab:"), "dash": "dash" if line == "--" else "solid"},
            marker={"symbol": symbols, "size": [6] * (len(epochs) - 1) + [11]}))
    figure.update_layout(title="Learning curves (pruned and stopped trials end in x)", xaxis_title="epoch",
                         yaxis_title=metric,
                         xaxis={"dtick": 1})
    return figure


def plotly_figures(study: optuna.Study, trials: list[TrialRecord], metric: str) -> dict[str, go.Figure]:
    """The same figures for the HTML page."""
    figures = {}
    for name, (_, plot) in optuna_plots(study).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures[name] = plot(study)
        except (ValueError, RuntimeError):
            continue
    figures["learning_curves"] = learning_curves_plotly(trials, metric)
    return figures


def evaluation_png(evaluation: dict, folder: Path) -> Path:
    """The figure of a trial's best-epoch evaluation in ``folder``: its confusion matrix (classification), or its
    predictions against the true values (regression: ``trainers.heads.RegressionHead.evaluation``)."""
    if evaluation.get("kind") == "regression":
        return predicted_vs_true_png(evaluation, folder / "predicted_vs_true.png")
    return confusion_matrix_png(evaluation, folder / "confusion_matrix.png")


def predicted_vs_true_png(evaluation: dict, path: Path) -> Path:
    """Predicted against true values, with the diagonal a perfect model would lie on."""
    matplotlib.use("Agg")
    true, predicted = evaluation["true"], evaluation["predicted"]
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.scatter(true, predicted, s=8, alpha=0.5)
    low, high = min(true + predicted), max(true + predicted)
    axes.plot([low, high], [low, high], color="grey", linewidth=1)
    axes.set(xlabel="true", ylabel="predicted",
             title=f"validation, epoch {evaluation.get('epoch', '?')} ({len(true)} rows)")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def confusion_matrix_png(evaluation: dict, path: Path) -> Path:
    """A trial's confusion matrix at its best epoch (``trainers.metrics.per_class``), drawn by scikit-learn."""

    matplotlib.use("Agg")

    display = ConfusionMatrixDisplay(np.array(evaluation["confusion_matrix"]), display_labels=evaluation["labels"])
    display.plot(cmap="Blues", colorbar=False)
    display.ax_.set_title(f"validation, epoch {evaluation.get('epoch', '?')} (rows: true label)")
    display.figure_.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(display.figure_)
    return path
