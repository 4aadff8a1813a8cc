"""Validation metrics: accuracy, balanced accuracy, macro-F1, ROC-AUC (binary), and the per-class view.

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    >>> labels = torch.tensor([0, 1, 1, 1])
    >>> m = classification_metrics(logits, labels)
    >>> round(m["val_accuracy"], 2), round(m["val_balanced_accuracy"], 3)
    (0.75, 0.833)
    >>> per_class(logits, labels, ("neg", "pos"))["confusion_matrix"]   # rows: true label, columns: predicted
    [[1, 0], [1, 2]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

EVALUATION_FILE = "evaluation.json"  # per_class() of the best epoch, beside its weights (trainers.checkpoint)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "val_") -> dict[str, float]:
    # Imported here, not at the top: scikit-learn takes 1.4 s to import on a 2-core machine, paid by the driver
    # and every trial worker before its first step otherwise (bench/overhead.py).

    preds = logits.argmax(-1)
    y, p = labels.cpu().numpy(), preds.cpu().numpy()
    out = {
        f"{prefix}accuracy": float((preds == labels).float().mean()),
        f"{prefix}balanced_accuracy": float(balanced_accuracy_score(y, p)),
        f"{prefix}f1_macro": float(
            f1_score(y, p, average="macro", labels=list(range(logits.shape[-1])), zero_division=0)
        ),
    }
    if logits.shape[-1] == 2 and len(set(y.tolist())) == 2:
        scores = torch.softmax(logits.float(), -1)[:, 1].cpu().numpy()
        out[f"{prefix}auc"] = float(roc_auc_score(y, scores))
    return out


def per_class(logits: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str]) -> dict[str, Any]:
    """The confusion matrix (rows: true label, columns: predicted) and each class's precision, recall, F1 and
    support: what a single accuracy hides on imbalanced data. Plain JSON types."""

    ids = list(range(len(label_names)))
    y, p = labels.cpu().numpy(), logits.argmax(-1).cpu().numpy()
    precision, recall, f1, support = precision_recall_fscore_support(y, p, labels=ids, zero_division=0)
    return {
        "labels": [str(name) for name in label_names],
        "confusion_matrix": confusion_matrix(y, p, labels=ids).tolist(),
        "per_class": {str(name): {"precision": float(precision[i]), "recall": float(recall[i]),
                                  "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(label_names)},
    }
