"""Environment defaults for Ray and MLflow, set once when the ``hpo`` command starts (tests and benchmarks
that drive studies in-process call :func:`set_defaults` themselves). An explicit setting always wins."""

from __future__ import annotations

import os

DEFAULTS = {
    # Trials checkpoint every epoch; Ray's warning about frequent snapshots is noise here.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bars in commands' output
    "RAY_AIR_NEW_OUTPUT": "0",  # the ledger prints one line per epoch instead
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C stops the study like `hpo stop`
    # A trial's out-of-memory result carries no metric (trainers report it on every epoch otherwise).
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}


def set_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
