"""The image fine-tuning loop: one call trains one configuration and reports every epoch with a checkpoint in
:mod:`trainers.checkpoint`'s layout (config, latest weights, resume state, summary, ``best/``), so hpo's ledger,
retention and resume treat an image trial as a text one. The text loop's CUDA out-of-memory halving is not here
yet: an image trial that runs out of GPU memory fails.

In a DDP group (:mod:`trainers.distributed`) every worker augments and mixes the whole global batch from the same
seeded generator, then trains its share of it; batch norm is synchronized across GPUs (``SyncBatchNorm``). On CPUs
PyTorch has no synchronized batch norm, so there each worker's batch statistics are over its share: a CPU group
matches one worker closely, not exactly (the text models, with layer norm only, match exactly).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from trainers import checkpoint, compact
from trainers.config import TrainConfig
from trainers.device import autocast_for, pick_device, seed_everything
from trainers.distill import Distillation
from trainers.distributed import Workers
from trainers.heads import ClassificationHead, class_weights
from trainers.images import model as image_model
from trainers.images.augment import augment, mixup
from trainers.images.data import ImageSplit, PreparedImages
from trainers.images.model import ImageClassifier
from trainers.metrics import EVALUATION_FILE
from trainers.optim import param_groups, warmup_then_linear_decay
from trainers.reporting import Reporter


@torch.no_grad()
def predict(model: ImageClassifier, split: ImageSplit, batch_size: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits in float32 on the CPU, labels) of every row of ``split``, in order."""
    model.eval()
    outputs = []
    for rows in torch.arange(len(split)).split(batch_size):
        pixels = model.normalize(split.pixels[rows].float().div(255)).to(device)
        with autocast_for(device):
            outputs.append(model(pixels).float().cpu())
    return torch.cat(outputs), torch.tensor(split.labels)


def freeze(model: ImageClassifier, depth: int) -> list[torch.nn.Module]:
    """Freezes the stem and the first ``depth`` blocks (their batch-norm statistics too); returns them."""
    stem, blocks = model.parts()
    if not 0 <= depth <= len(blocks):
        raise ValueError(f"freeze_depth must be in 0..{len(blocks)} for {model.backbone}, got {depth}")
    frozen = [stem, *blocks[:depth]] if depth else []
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def fine_tune(cfg: TrainConfig, data: PreparedImages, reporter: Reporter) -> dict[str, float] | None:
    """Trains ``cfg`` on ``data`` for up to ``cfg.max_epochs`` epochs (continuing ``cfg.resume_from``); returns the
    best epoch's metrics."""
    if cfg.method == "lora":
        raise ValueError("method=lora adapts transformer layers; an image backbone trains full or freeze")
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device()
    model = image_model.load(cfg.resume_from, checkpoint.image_weights_of(cfg.resume_from)) if cfg.resume_from \
        else ImageClassifier(
        cfg.model_name_or_path, data.label_names, dropout=cfg.dropout, image_size=data.image_size,
        pretrained=cfg.pretrained)
    frozen = freeze(model, cfg.freeze_depth if cfg.method == "freeze" else 0)
    workers = Workers.current()
    if workers.size > 1 and device.type == "cuda":  # the group's batch statistics, as one worker's over the batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    trained = workers.wrap(model, device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.learning_rate, cfg.weight_decay, cfg.layer_lr_decay,
                                               parts=model.parts()), lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    scheduler = warmup_then_linear_decay(optimizer, steps_per_epoch * cfg.max_epochs, cfg.warmup_ratio)
    head = ClassificationHead()
    distill = Distillation(cfg.distill_temperature, cfg.distill_alpha)
    weights = class_weights(cfg.class_weights, data.train.labels, data.num_labels)
    weights = weights.to(device) if weights is not None else None
    labels = torch.tensor(data.train.labels)

    def loss_of(logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        """The head's loss summed over the rows, or blended with the teacher's logits for them (mixup mixes both);
        the step divides it by the global batch's rows (class weights scale rows, as in the text loop)."""
        if teacher is None:
            return head.loss(logits, target, weights, reduction="sum")
        return distill.loss(head, logits, target, teacher, weights, reduction="sum")

    sizes = {"trainable_params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
             "model_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20}
    work = Path(tempfile.mkdtemp(prefix="hpo-image-trial-"))
    best_dir = work / checkpoint.BEST_DIR
    state: dict[str, Any] = {"epoch": 0, "best": None, "epochs_without_improvement": 0}
    if cfg.resume_from:
        state = checkpoint.restore(Path(cfg.resume_from), optimizer, scheduler, best_dir)
        if state["epoch"] >= cfg.max_epochs:  # interrupted after its last epoch: report it again
            shutil.rmtree(work, ignore_errors=True)
            reporter.report(checkpoint.read_summary(cfg.resume_from)["metrics"], Path(cfg.resume_from))
            return state["best"]
    best = state["best"]
    try:
        for epoch in range(state["epoch"] + 1, min(cfg.until_epoch or cfg.max_epochs, cfg.max_epochs) + 1):
            started, generator = time.perf_counter(), torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            model.train()
            for module in frozen:
                module.eval()  # frozen batch-norm layers keep their ImageNet statistics
            loss_sum, seen = 0.0, 0
            for rows in _batches(torch.randperm(len(data.train), generator=generator), cfg.batch_size,
                                 least=2 * workers.size):
                # The whole global batch augmented and mixed on every worker (one generator), then this one's share.
                images = augment(data.train.pixels[rows].float().div(255), crop_scale=cfg.aug_crop_scale,
                                 flip=cfg.aug_flip, magnitude=cfg.aug_magnitude, generator=generator)
                images, permutation, lam = mixup(images, cfg.mixup_alpha, generator)
                shared = workers.share(list(range(len(rows))))
                mine, weight = torch.tensor(shared or [0]), 1.0 if shared else 0.0  # 0: a stand-in row
                teacher = data.train.teacher[rows] if data.train.teacher is not None else None
                mixed_teacher = teacher[permutation][mine] if teacher is not None else None
                with autocast_for(device):
                    logits = trained(model.normalize(images[mine]).to(device))
                per_row = len(rows) / workers.size  # DDP averages over workers: the step is the global mean
                loss = (lam * loss_of(logits, labels[rows][mine].to(device), None if teacher is None else teacher[mine])
                        + (1 - lam) * loss_of(logits, labels[rows][permutation][mine].to(device), mixed_teacher)) \
                    * weight / per_row
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum, seen = loss_sum + loss.item() * per_row, seen + len(shared)
            loss_sum, examples = workers.total(loss_sum, seen)
            train_seconds = time.perf_counter() - started
            evaluated = time.perf_counter()
            shared = workers.share(list(range(len(data.validation))))
            logits, truth = predict(model, data.validation.subset(shared) if workers.size > 1 else data.validation,
                                    cfg.eval_batch_size, device)
            logits, truth = workers.gather(shared, logits, truth, len(data.validation))
            metrics = head.metrics(logits, truth)
            metrics.update(epoch=epoch, train_loss=loss_sum / max(examples, 1),
                           train_examples_per_s=examples / train_seconds,
                           epoch_seconds=time.perf_counter() - started,
                           latency_ms=1000 * (time.perf_counter() - evaluated) / max(len(truth), 1),
                           lr=float(scheduler.get_last_lr()[-1]), **sizes)
            improved = cfg.objective.better(metrics[cfg.metric], best[cfg.metric] if best else None)
            metrics["improved"] = float(improved)
            waited = 0 if improved else state["epochs_without_improvement"] + 1
            if cfg.early_stopping_patience and waited >= cfg.early_stopping_patience and epoch < cfg.max_epochs:
                metrics["early_stopped"] = 1.0
            if improved:
                best = metrics
            if improved and workers.chief:  # one writer: every worker holds the same weights
                shutil.rmtree(best_dir, ignore_errors=True)
                model.save(best_dir)
                evaluation = {"epoch": epoch, **head.evaluation(logits, truth, data.label_names)}
                (best_dir / EVALUATION_FILE).write_text(json.dumps(evaluation))
            state = {"epoch": epoch, "best": best, "epochs_without_improvement": waited,
                     "history": [*state.get("history", []), metrics]}
            if not workers.chief:
                reporter.report(metrics, None)  # the chief's report counts; the others keep the group in step
            else:
                with tempfile.TemporaryDirectory(prefix="hpo-image-ckpt-") as tmp:
                    reporter.report(metrics, _save(Path(tmp), model, optimizer, scheduler, state, best_dir, metrics))
            if "early_stopped" in metrics:
                break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return best


def _batches(order: torch.Tensor, size: int, least: int) -> list[torch.Tensor]:
    """``order`` in batches of ``size``; a last batch under ``least`` rows joins the one before: batch norm cannot
    train on a single row (per worker, in a group)."""
    batches = list(order.split(size))
    if len(batches) > 1 and len(batches[-1]) < least:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _save(folder: Path, model: ImageClassifier, optimizer, scheduler, state: dict, best_dir: Path,
          metrics: dict[str, float]) -> Path:
    """A checkpoint: config, the latest weights (unless this epoch is the best, whose weights ``best/`` holds),
    resume state, ``best/``, and the summary written last."""
    model.save(folder, weights=False)
    if not metrics.get("improved"):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / compact.WEIGHTS_FILE))
    torch.save({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, folder / checkpoint.STATE_FILE)
    shutil.copytree(best_dir, folder / checkpoint.BEST_DIR)
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    (folder / checkpoint.SUMMARY_FILE).write_text(json.dumps({"epoch": state["epoch"], "metrics": metrics,
                                                              "files": files, "history": state["history"]}))
    return folder
