"""Validation metrics: accuracy, macro-F1, and ROC-AUC for binary tasks."""

from __future__ import annotations

import torch
from sklearn.metrics import f1_score, roc_auc_score


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "val_") -> dict[str, float]:
    preds = logits.argmax(-1)
    y, p = labels.cpu().numpy(), preds.cpu().numpy()
    out = {
        f"{prefix}accuracy": float((preds == labels).float().mean()),
        f"{prefix}f1_macro": float(
            f1_score(y, p, average="macro", labels=list(range(logits.shape[-1])), zero_division=0)
        ),
    }
    if logits.shape[-1] == 2 and len(set(y.tolist())) == 2:
        scores = torch.softmax(logits.float(), -1)[:, 1].cpu().numpy()
        out[f"{prefix}auc"] = float(roc_auc_score(y, scores))
    return out
