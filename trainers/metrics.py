"""Validation metrics: accuracy, macro-F1, and ROC-AUC for binary tasks."""

from __future__ import annotations

import torch


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "val_") -> dict[str, float]:
    # Imported here, not at the top: scikit-learn takes 1.4 s to import on a 2-core machine, paid by the driver
    # and every trial worker before its first step otherwise (bench/overhead.py).
    from sklearn.metrics import f1_score, roc_auc_score

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
