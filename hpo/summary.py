"""The end-of-study report printed by ``hpo sweep`` and ``hpo resume``."""

from __future__ import annotations

from hpo.tuner import StudyOutcome


def format_summary(o: StudyOutcome, metric: str) -> str:
    lines = [f"\n=== study {o.name}: {o.status} in {o.wall_s / 60:.1f} min ==="]
    if o.stop_reason:
        lines.append(f"reason: {o.stop_reason}")
    if o.best_value is not None:
        lines.append(f"best {metric}: {o.best_value:.4f}  (trial {o.best_trial_number})")
        lines.append("best params:")
        lines += [f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}"
                  for k, v in sorted(o.best_params.items())]
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(o.trial_status.items())))
    if o.epochs_used:
        saved = 1 - o.epochs_used / o.epochs_max
        lines.append(f"epochs trained: {o.epochs_used} of {o.epochs_max} ({saved:.0%} saved by early stopping)")
    if o.best_checkpoint:
        lines.append(f"best checkpoint: {o.best_checkpoint}")
    if o.model_uri:
        lines.append(f"best model: {o.model_uri}")
    lines.append(f"MLflow: {o.tracking_uri}  experiment {o.experiment_id}, study run {o.parent_run_id}")
    if o.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {o.tracking_uri}   (or: make ui)")
    lines.append(f"Optuna: {o.optuna_url}  (optuna-dashboard {o.optuna_url})")
    lines += [f"note: {n}" for n in o.notes]
    return "\n".join(lines)
