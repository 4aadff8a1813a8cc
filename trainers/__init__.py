"""Text-classification fine-tuning that runs inside a trial or on its own.

Knows nothing of Ray or MLflow: progress leaves through a :class:`~trainers.reporting.Reporter`.

Example (a tiny random BERT, a handful of rows, a few seconds on a CPU)::

    from trainers import TrainConfig, fine_tune, prepare_data, ConsoleReporter
    from trainers.tiny import build_tiny_bert
    path = build_tiny_bert("/tmp/tiny-bert")
    data = prepare_data("train.csv", "dev.csv", tokenizer_path=path)
    fine_tune(TrainConfig(model_name_or_path=str(path), max_epochs=1), data, ConsoleReporter())
"""

from trainers.checkpoint import load_model
from trainers.config import TrainConfig
from trainers.data import PreparedData, prepare_data
from trainers.loop import fine_tune
from trainers.modeling import TextClassifier, UnsupportedArchitecture
from trainers.reporting import ConsoleReporter, Reporter

__all__ = [
    "ConsoleReporter",
    "PreparedData",
    "Reporter",
    "TextClassifier",
    "TrainConfig",
    "UnsupportedArchitecture",
    "fine_tune",
    "load_model",
    "prepare_data",
]
