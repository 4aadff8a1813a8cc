"""What a task head's outputs mean: the loss, the validation metrics, the best epoch's evaluation, and how several
models' outputs combine. One class per kind of output, so the training loop is the same for classes and scores.

Example::

    >>> import torch
    >>> head = RegressionHead("mse")
    >>> metrics = head.metrics(torch.tensor([[1.0], [2.0], [3.5]]), torch.tensor([1.0, 2.0, 3.0]))
    >>> round(metrics["val_rmse"], 3), round(metrics["val_spearman"], 3)
    (0.289, 1.0)
    >>> ClassificationHead().combine([torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])]).exp().tolist()
    [[0.5, 0.5]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from trainers.config import CLASS_WEIGHTS, REGRESSION_LOSSES
from trainers.metrics import classification_metrics, per_class

_SCATTER_ROWS = 2000  # the most (true, predicted) pairs a regression evaluation keeps for its scatter plot


class ClassificationHead:
    """Logits over the classes: cross-entropy, accuracy/F1/AUC, the confusion matrix; ensembles average
    probabilities."""

    kind = "classification"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, weight=weights, reduction=reduction)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"val_loss": float(self.loss(outputs, targets)), **classification_metrics(outputs, targets)}

    def evaluation(self, outputs: torch.Tensor, targets: torch.Tensor, label_names: Sequence[str]) -> dict[str, Any]:
        return per_class(outputs, targets, label_names)

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The log of the mean of the members' class probabilities (logits of the averaged model)."""
        return torch.stack([o.float().softmax(-1) for o in outputs]).mean(0).log()


class RegressionHead:
    """One float per row: MSE (or Huber, less swayed by outlying targets), RMSE/MAE/Pearson/Spearman, a scatter of
    predicted against true; ensembles average predictions."""

    kind = "regression"

    def __init__(self, loss: str = "mse") -> None:
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"regression_loss must be one of {REGRESSION_LOSSES}, got {loss!r}")
        self.loss_name = loss

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
        predicted = outputs.float().reshape(-1)
        if self.loss_name == "huber":
            return F.huber_loss(predicted, targets.float(), reduction=reduction)
        return F.mse_loss(predicted, targets.float(), reduction=reduction)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        predicted, true = outputs.float().reshape(-1), targets.float()
        error = predicted - true
        return {"val_loss": float(self.loss(outputs, targets)), "val_rmse": float(error.pow(2).mean().sqrt()),
                "val_mae": float(error.abs().mean()), "val_pearson": _correlation(predicted, true),
                "val_spearman": _correlation(_ranks(predicted), _ranks(true))}

    def evaluation(self, outputs: torch.Tensor, targets: torch.Tensor, label_names: Sequence[str]) -> dict[str, Any]:
        return {"kind": "regression", "true": targets.float()[:_SCATTER_ROWS].tolist(),
                "predicted": outputs.float().reshape(-1)[:_SCATTER_ROWS].tolist()}

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([o.float() for o in outputs]).mean(0)


Head = ClassificationHead | RegressionHead


def head_for(regression: bool, regression_loss: str = "mse") -> Head:
    return RegressionHead(regression_loss) if regression else ClassificationHead()


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), as Spearman's coefficient needs."""
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype)
    unique, inverse = values.unique(return_inverse=True)
    sums = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, torch.ones_like(values))
    return (sums / counts)[inverse]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r; 0 when either side is constant (an untrained head predicts one value: no correlation)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    value = float((a * b).sum()) / denominator if denominator > 0 else 0.0
    return value if math.isfinite(value) else 0.0


def class_weights(kind: str, labels: list[int], num_labels: int) -> torch.Tensor | None:
    """The loss weight of each class: ``balanced`` gives class c the weight n / (k * n_c) (scikit-learn's rule), so
    every class adds as much to the loss as the others however rare it is; ``none``: None (plain mean).

    >>> [round(w, 3) for w in class_weights("balanced", [0, 0, 0, 1], 2).tolist()]
    [0.667, 2.0]
    """
    if kind not in CLASS_WEIGHTS:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {kind!r}")
    if kind == "none":
        return None
    if num_labels < 2:
        raise ValueError("class_weights=balanced needs classes; a regression task has none (use none)")
    labels = [label for label in labels if label >= 0]  # rows only a teacher labels (trainers.distill) are no class
    counts = torch.bincount(torch.tensor(labels), minlength=num_labels).float()
    return len(labels) / (num_labels * counts.clamp(min=1.0))
