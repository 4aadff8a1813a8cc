"""One trial's training settings: the sampled hyperparameters plus the fixed ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trainers.objective import Objective

# The vocabulary of the settings: what a trial reports, and the values of its categorical settings. Kept here, away
# from the training loop, so that code which only reads or checks settings (hpo's config layer) imports no torch.
VALIDATION_METRICS = ("val_loss", "val_accuracy", "val_balanced_accuracy", "val_f1_macro", "val_auc")
REGRESSION_METRICS = ("val_loss", "val_rmse", "val_mae", "val_pearson", "val_spearman")
LOWER_IS_BETTER = ("val_loss", "val_rmse", "val_mae")  # errors, not scores: a study minimizes them
REGRESSION_LOSSES = ("mse", "huber")  # huber: less swayed by a few far-off targets
# Lower is better: secondary objectives, and what a study that searches the model weighs quality against.
COST_METRICS = ("latency_ms", "epoch_seconds", "trainable_params", "model_mb")
CLASS_WEIGHTS = ("none", "balanced")
METHODS = ("full", "freeze", "lora")
POOLINGS = ("cls", "mean")  # what the head reads: the [CLS] token, or the mean over the sequence


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`trainers.fine_tune` needs besides the data.

    The first block is what a search samples; the rest is fixed per study.
    ``freeze_depth`` counts encoder blocks frozen from the bottom (0 = full fine-tuning); the
    embeddings are frozen whenever ``freeze_depth > 0``.
    """

    learning_rate: float = 5e-5
    batch_size: int = 32
    freeze_depth: int = 0
    weight_decay: float = 0.01
    dropout: float = 0.1
    layer_lr_decay: float = 1.0
    warmup_ratio: float = 0.1
    class_weights: str = "none"  # "balanced": rare classes weigh as much in the loss as common ones
    method: str = "freeze"  # full: train everything | freeze: freeze_depth blocks frozen | lora (trainers.lora)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_learning_rate: float = 5e-4  # LoRA's own LR (about 10x full fine-tuning's), used instead of learning_rate

    model_name_or_path: str = ""
    pooling: str = "cls"
    max_epochs: int = 3
    max_length: int = 128
    eval_batch_size: int = 128
    grad_clip: float = 1.0
    min_micro_batch_size: int = 1  # CUDA OOM halves the micro-batch (accumulating gradients) down to this
    early_stopping_patience: int | None = None
    metric: str = "val_accuracy"
    mode: str = "max"
    seed: int = 0
    num_threads: int | None = None
    resume_from: str | None = None  # a checkpoint folder written by fine_tune: continue after its epoch
    until_epoch: int | None = None  # stop after this epoch (the LR schedule still spans max_epochs): trainers.cv
    cv_folds: int = 0  # k >= 2: the objective is the k-fold cross-validated mean (trainers.cv)
    regression_loss: str = "mse"  # for a regression task (float targets): mse | huber
    pretrained: bool = True  # False: the same architecture from random weights (what pretraining is worth)
    aug_crop_scale: float = 1.0  # images: the smallest share of an image a random resized crop keeps (1 = none)
    aug_flip: bool = False  # images: random horizontal flips
    aug_magnitude: float = 0.0  # images: 0-10, RandAugment-style rotation, shear, brightness and contrast
    mixup_alpha: float = 0.0  # images: mixup's Beta(alpha, alpha); 0 = off
    function: str = ""  # task=custom: the user's training function, package.module:function
    function_path: str = ""  # the folder its module was imported from (put on a worker's sys.path)
    params: dict[str, Any] = field(default_factory=dict)  # task=custom: the sampled values of the user's own names
    # Distillation, when the training rows carry a teacher's outputs (trainers.distill):
    distill_temperature: float = 2.0  # softens the teacher's and the student's classes
    distill_alpha: float = 0.5  # the task loss's share; the teacher's term gets the rest

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a flat mapping, rejecting unknown keys so a typo never goes unnoticed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def effective_learning_rate(self) -> float:
        return self.lora_learning_rate if self.method == "lora" else self.learning_rate

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.mode)
