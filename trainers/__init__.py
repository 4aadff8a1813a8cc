"""Fine-tuning that runs inside a trial or on its own: the tasks (:mod:`trainers.tasks`: text classification and
regression, image classification, the user's own function) and what they share (heads, checkpoints, devices).

Knows nothing of Ray or MLflow: progress leaves through a :class:`~trainers.reporting.Reporter`. Names are resolved
when first used (PEP 562), so code that only reads settings (``trainers.config``, ``trainers.objective``) imports
no torch or transformers.

Example (a tiny random BERT, a handful of rows, a few seconds on a CPU)::

    from trainers import TrainConfig, fine_tune, prepare_data, ConsoleReporter
    from trainers.tiny import build_tiny_bert
    path = build_tiny_bert("/tmp/tiny-bert")
    data = prepare_data("train.csv", "dev.csv", tokenizer_path=path)
    fine_tune(TrainConfig(model_name_or_path=str(path), max_epochs=1), data, ConsoleReporter())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_exports

_EXPORTS = {
    "ConsoleReporter": "trainers.reporting",
    "PreparedData": "trainers.data",
    "Reporter": "trainers.reporting",
    "TextClassifier": "trainers.modeling",
    "TrainConfig": "trainers.config",
    "UnsupportedArchitecture": "trainers.modeling",
    "fine_tune": "trainers.loop",
    "load_model": "trainers.checkpoint",
    "load_task": "trainers.tasks",
    "prepare_data": "trainers.data",
}
__all__ = [
    "ConsoleReporter",
    "PreparedData",
    "Reporter",
    "TextClassifier",
    "TrainConfig",
    "UnsupportedArchitecture",
    "fine_tune",
    "load_model",
    "load_task",
    "prepare_data",
]

if TYPE_CHECKING:
    from trainers.checkpoint import load_model
    from trainers.config import TrainConfig
    from trainers.data import PreparedData, prepare_data
    from trainers.loop import fine_tune
    from trainers.modeling import TextClassifier, UnsupportedArchitecture
    from trainers.reporting import ConsoleReporter, Reporter
    from trainers.tasks import load_task


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
