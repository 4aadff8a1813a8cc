"""hpo: hyperparameter search for fine-tuning pretrained models (Hydra -> Ray Tune + Optuna -> MLflow)."""

__version__ = "0.1.0"
