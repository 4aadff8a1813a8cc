"""A plain PyTorch model tuned by hpo with ``task=custom``: an MLP on scikit-learn's bundled handwritten digits (1,797
8x8 images, shipped inside scikit-learn: real data, nothing downloaded). No transformers, no hpo imports: the
function only follows the contract (docs/custom-task.md)::

    hpo sweep experiment=custom_mlp                 # conf/experiment/custom_mlp.yaml: the space and the metric
    hpo sweep task=custom task.fn=examples.custom_mlp:train study.metric=val_acc \\
        '+search.lr={low:0.001,high:0.3,log:true}' '+search.hidden={choices:[32,64,128]}'

Each epoch it reports ``val_acc``, ``val_loss`` and ``train_loss`` with a checkpoint folder holding the model, the
optimizer and the epoch, so a trial that Ray restarts, or that ``hpo resume`` continues after a ``kill -9``, goes on
from its last epoch (``trial.resume_from``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

VALIDATION_ROWS = 400


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits, scaled to [0, 1], split once with a fixed seed (the same split for every trial)."""
    x, y = load_digits(return_X_y=True)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = torch.tensor(x, dtype=torch.float32)[order] / 16.0, torch.tensor(y)[order]
    return x[VALIDATION_ROWS:], y[VALIDATION_ROWS:], x[:VALIDATION_ROWS], y[:VALIDATION_ROWS]


def _model(params: dict[str, Any]) -> nn.Module:
    hidden, dropout = int(params.get("hidden", 64)), float(params.get("dropout", 0.0))
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


def train(params: dict[str, Any], trial) -> None:
    """One trial: ``params`` are the sampled values (lr, hidden, dropout, weight_decay, batch_size)."""
    device = torch.device(trial.device)
    train_x, train_y, val_x, val_y = (t.to(device) for t in _data())
    model = _model(params).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(params.get("lr", 0.01)),
                                  weight_decay=float(params.get("weight_decay", 0.0)))
    start = 0
    if trial.resume_from:  # the folder this function reported last: continue after its epoch
        state = torch.load(Path(trial.resume_from) / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    generator = torch.Generator().manual_seed(trial.seed)
    batch_size = int(params.get("batch_size", 32))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start + 1, trial.max_epochs + 1):
        model.train()
        total = 0.0
        for rows in torch.randperm(len(train_y), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[rows]), train_y[rows])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        model.eval()
        with torch.no_grad():
            logits = model(val_x)
        metrics = {"val_acc": float((logits.argmax(-1) == val_y).float().mean()),
                   "val_loss": float(loss_fn(logits, val_y)), "train_loss": total / len(train_y)}
        with tempfile.TemporaryDirectory() as folder:  # hpo copies it during report()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                       Path(folder) / "state.pt")
            trial.report(metrics, checkpoint_dir=folder)
