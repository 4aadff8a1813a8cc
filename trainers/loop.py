"""The fine-tuning loop: one call trains one configuration and reports every epoch."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainers import checkpoint, compact
from trainers.batching import batches, evaluation_order, training_steps
from trainers.compact import BaseModel
from trainers.config import METHODS, TrainConfig
from trainers.cv import cross_validate
from trainers.data import PreparedData, TokenizedSplit
from trainers.device import autocast_for, half_dtype, pick_device, seed_everything, to_device
from trainers.distill import Distillation
from trainers.distributed import Workers, last_flags, no_sync_unless
from trainers.heads import Head, class_weights, head_for
from trainers.lora import add_lora
from trainers.metrics import EVALUATION_FILE
from trainers.modeling import TextClassifier, freeze, load_classifier
from trainers.oom import MicroBatching, release_cuda_memory
from trainers.optim import param_groups, warmup_then_linear_decay
from trainers.reporting import Reporter


@torch.no_grad()
def predict(classifier: torch.nn.Module, split: TokenizedSplit, pad_token_id: int, batch_size: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs in float32 on the CPU, targets) of every row of ``split``, in the split's order (batched by length,
    put back), so several models' outputs line up row by row."""
    classifier.eval()
    all_logits, all_labels = [], []
    for batch in batches(split, batch_size, pad_token_id):
        all_labels.append(batch["labels"])
        batch = to_device(batch, device)
        with autocast_for(device):
            logits = forward(classifier, batch)
        all_logits.append(logits.float().cpu())
    order = torch.tensor(evaluation_order(split), dtype=torch.long)
    labels = torch.cat(all_labels)
    outputs, targets = torch.empty(len(split), all_logits[0].shape[-1]), torch.empty(len(split), dtype=labels.dtype)
    outputs[order], targets[order] = torch.cat(all_logits), labels
    return outputs, targets


def forward(classifier: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's outputs for a batch (with token type ids when the rows are sentence pairs)."""
    return classifier(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))


def validation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Classification metrics of logits (regression: :class:`trainers.heads.RegressionHead`)."""
    return head_for(regression=False).metrics(logits, labels)


def fine_tune(cfg: TrainConfig, data: PreparedData, reporter: Reporter) -> dict[str, float] | None:
    """Trains ``cfg`` on ``data`` for up to ``cfg.max_epochs`` epochs; returns the best epoch's metrics (None: no
    epoch ran, e.g. a resumed run that had already ended without one).

    Each epoch ends with a validation pass and one ``reporter.report`` call with a checkpoint
    folder (see :class:`~trainers.reporting.Reporter`). With ``cfg.resume_from`` set to such a
    folder, training continues after that folder's epoch with the optimizer, LR schedule, RNG and
    best-so-far restored, as if it had never stopped. A CUDA out-of-memory error shrinks the
    micro-batch and keeps the effective batch size (:mod:`trainers.oom`); below
    ``cfg.min_micro_batch_size`` it raises :class:`~trainers.oom.TrainingOutOfMemory`.
    """
    if cfg.cv_folds > 1:
        return cross_validate(cfg, data, reporter, train=fine_tune)
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device()
    workers = Workers.current()  # one, or a DDP group (trainers.distributed): the same model and metrics

    if cfg.resume_from:
        classifier = checkpoint.load_model(cfg.resume_from)
    else:
        classifier = load_classifier(cfg.model_name_or_path, data.label_names, pooling=cfg.pooling,
                                     dropout=cfg.dropout, text_pair=data.text_pair)
    head = head_for(data.regression, cfg.regression_loss)
    _prepare_method(classifier, cfg)
    # What checkpoints leave out and refer to instead: the frozen parameters, hashed before any step.
    base = BaseModel.of(classifier, cfg.model_name_or_path)
    classifier.to(device)
    model = workers.wrap(classifier, device)

    optimizer = torch.optim.AdamW(
        param_groups(classifier.model, cfg.effective_learning_rate, cfg.weight_decay, cfg.layer_lr_decay),
        lr=cfg.effective_learning_rate,
        fused=device.type == "cuda",
    )
    # fp16 needs loss scaling to keep small gradients; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler("cuda", enabled=half_dtype(device) == torch.float16)
    # Costs a multi-objective study can trade accuracy against (hpo.ranking), with latency_ms measured per epoch.
    sizes = {"trainable_params": float(sum(p.numel() for p in classifier.parameters() if p.requires_grad)),
             "model_mb": sum(p.numel() * p.element_size() for p in classifier.parameters()) / 2**20}
    weights = class_weights(cfg.class_weights, data.train.labels, data.num_labels)
    weights = weights.to(device) if weights is not None else None
    loss_of = _loss(head, weights, Distillation(cfg.distill_temperature, cfg.distill_alpha)
                    if data.train.teacher is not None else None)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    scheduler = warmup_then_linear_decay(optimizer, steps_per_epoch * cfg.max_epochs, cfg.warmup_ratio)

    work = Path(tempfile.mkdtemp(prefix="hpo-trial-"))
    best_dir = work / checkpoint.BEST_DIR
    state: dict[str, Any] = {"epoch": 0, "best": None, "epochs_without_improvement": 0}
    if cfg.resume_from:
        state = checkpoint.restore(Path(cfg.resume_from), optimizer, scheduler, best_dir)
    best: dict[str, float] | None = state["best"]
    # A resumed run keeps the micro-batch its OOMs taught it, instead of hitting them again.
    micro = MicroBatching(cfg.batch_size, cfg.min_micro_batch_size, state.get("micro_batch_size"))
    eval_micro = MicroBatching(cfg.eval_batch_size, 1, state.get("eval_batch_size"), setting="trainer.eval_batch_size")
    epochs_without_improvement: int = state["epochs_without_improvement"]
    if cfg.resume_from and _finished(cfg, state):
        # Interrupted after its last epoch: report that epoch again so the caller sees the run end.
        shutil.rmtree(work, ignore_errors=True)
        reporter.report(checkpoint.read_summary(cfg.resume_from)["metrics"], Path(cfg.resume_from))
        return best
    try:
        for epoch in range(state["epoch"] + 1, min(cfg.until_epoch or cfg.max_epochs, cfg.max_epochs) + 1):
            model.train()
            started, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
            for step in training_steps(data.train, cfg.batch_size, data.pad_token_id, cfg.seed * 1000 + epoch,
                                       workers):
                batch = to_device(step.batch, device)
                per_row = step.rows / workers.size  # DDP averages over workers: the step is the global mean
                loss = _train_step(model, loss_of, batch, micro, optimizer, scaler, cfg.grad_clip, device,
                                   per_row, weight=0.0 if step.stand_in else 1.0)
                scheduler.step()
                loss_sum += loss * per_row  # this worker's summed loss, on the device: no sync per step
                seen += 0 if step.stand_in else len(batch["labels"])
            total_loss, examples = workers.total(float(loss_sum), seen)  # the epoch's one sync
            train_loss = total_loss / max(examples, 1)
            train_seconds = time.perf_counter() - started

            evaluated = time.perf_counter()
            logits, labels = _predict_within_memory(classifier, data, eval_micro, device, workers)
            latency_ms = 1000 * (time.perf_counter() - evaluated) / max(len(labels), 1)  # validation, per row
            metrics = head.metrics(logits, labels)
            metrics.update(
                epoch=epoch,
                train_loss=train_loss,
                train_examples_per_s=examples / train_seconds,  # the group's rows
                epoch_seconds=time.perf_counter() - started,  # training + validation: what the epoch cost
                latency_ms=latency_ms,
                **sizes,
                lr=float(scheduler.get_last_lr()[-1]),
                micro_batch_size=micro.size,
                grad_accumulation=micro.accumulation,
            )
            improved = cfg.objective.better(metrics[cfg.metric], best[cfg.metric] if best else None)
            metrics["improved"] = float(improved)
            epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
            patience = cfg.early_stopping_patience
            if patience and epochs_without_improvement >= patience and epoch < cfg.max_epochs:
                metrics["early_stopped"] = 1.0  # tells the caller this short run was the trainer's choice
            if improved:
                best = metrics
            if improved and workers.chief:  # one writer: every worker holds the same weights
                shutil.rmtree(best_dir, ignore_errors=True)
                compact.save(classifier, best_dir, base)
                report = {"epoch": epoch, **head.evaluation(logits, labels, data.label_names)}
                (best_dir / EVALUATION_FILE).write_text(json.dumps(report))
            state = {"epoch": epoch, "best": best, "epochs_without_improvement": epochs_without_improvement,
                     "micro_batch_size": micro.size, "eval_batch_size": eval_micro.size,
                     "history": [*state.get("history", []), metrics]}
            if not workers.chief:
                reporter.report(metrics, None)  # the chief's report counts; the others keep the group in step
            else:
                with tempfile.TemporaryDirectory(prefix="hpo-ckpt-") as tmp:
                    reporter.report(metrics, checkpoint.save(Path(tmp), classifier, base, optimizer, scheduler,
                                                             state, best_dir, metrics))
            if "early_stopped" in metrics:
                break
    finally:
        shutil.rmtree(work, ignore_errors=True)
        del model, classifier, optimizer, scheduler  # the next trial in this worker starts from a clean GPU
        if device.type == "cuda":
            torch.cuda.empty_cache()
    assert best is not None
    return best


def _prepare_method(classifier: TextClassifier, cfg: TrainConfig) -> None:
    """What trains: everything (``full``), all but the embeddings and ``freeze_depth`` blocks (``freeze``), or LoRA
    adapters and the head (``lora``)."""
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {cfg.method!r}")
    if cfg.method == "lora":
        add_lora(classifier, cfg.lora_rank, cfg.lora_alpha)
    else:
        freeze(classifier.model, cfg.freeze_depth if cfg.method == "freeze" else 0)


LossOf = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]  # (outputs, batch) -> the rows' summed loss


def _loss(head: Head, weights: torch.Tensor | None, distillation: Distillation | None) -> LossOf:
    """The training loss of a batch's outputs, summed over its rows: the head's own, or blended with a teacher's
    outputs (``batch["teacher"]``) when the rows carry them. Class weights scale each row's task term."""
    if distillation is None:
        return lambda outputs, batch: head.loss(outputs, batch["labels"], weights, reduction="sum")
    return lambda outputs, batch: distillation.loss(head, outputs, batch["labels"], batch["teacher"], weights,
                                                    reduction="sum")


def _train_step(classifier: torch.nn.Module, loss_of: LossOf, batch: dict[str, torch.Tensor],
                micro: MicroBatching, optimizer, scaler: torch.amp.GradScaler, grad_clip: float,
                device: torch.device, per_row: float, weight: float = 1.0) -> torch.Tensor:
    """One optimizer step over ``batch``, in micro-batches whose gradients sum to the whole batch's: each row's loss
    divided by ``per_row`` (the batch's rows; the global batch's / workers in a group), times ``weight`` (0: a
    stand-in row, :class:`trainers.batching.Step`).

    On CUDA out-of-memory the step is redone from scratch with half the micro-batch (see
    :mod:`trainers.oom`); returns the batch's mean loss, still on the device.
    """
    while True:
        try:
            loss = _accumulate_gradients(classifier, loss_of, batch, micro, scaler, device, per_row, weight)
            break
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
        # Outside the handler: the exception's frames (and their activations) are gone by now.
        micro.shrink()
        release_cuda_memory(device)
    if grad_clip:
        scaler.unscale_(optimizer)
        _clip_gradients(classifier, grad_clip, device)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _clip_gradients(classifier: torch.nn.Module, max_norm: float, device: torch.device) -> None:
    """``clip_grad_norm_``, without its second pass over every gradient when nothing needs clipping on a CPU.

    On a GPU the scaling is always applied (by a factor of at most 1), so no step waits on the norm; on a CPU
    reading the norm costs nothing and skipping the no-op rescale saves a pass over the gradients."""
    grads = [p.grad for p in classifier.parameters() if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, foreach=device.type == "cuda" or None)
    if device.type == "cuda" or float(total) > max_norm:
        torch.nn.utils.clip_grads_with_norm_(classifier.parameters(), max_norm, total)


def _accumulate_gradients(classifier: torch.nn.Module, loss_of: LossOf, batch: dict[str, torch.Tensor],
                          micro: MicroBatching, scaler: torch.amp.GradScaler, device: torch.device, per_row: float,
                          weight: float) -> torch.Tensor:
    total = torch.zeros((), device=device)
    parts = list(micro.split(batch))
    for part, last in zip(parts, last_flags(len(parts)), strict=True):
        with no_sync_unless(last, classifier):
            with autocast_for(device):
                logits = forward(classifier, part)
            # Summed over the part, divided by the whole batch: the parts' gradients add up to the batch mean's (with
            # class weights too: divided by rows, not by the weights' sum).
            loss = loss_of(logits, part) * weight / per_row
            scaler.scale(loss).backward()
        total += loss.detach()
    return total


def _predict_within_memory(classifier: torch.nn.Module, data: PreparedData, eval_micro: MicroBatching,
                           device: torch.device, workers: Workers) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation, each worker on its share of the rows, gathered back whole; redone with half the batch on CUDA
    out-of-memory (evaluation has no state to undo)."""
    rows = workers.share(list(range(len(data.validation))))
    mine = data.validation.subset(rows) if workers.size > 1 else data.validation
    while True:
        try:
            outputs, targets = predict(classifier, mine, data.pad_token_id, eval_micro.size, device)
            break
        except torch.OutOfMemoryError:
            pass
        eval_micro.shrink()
        release_cuda_memory(device)
    return workers.gather(rows, outputs, targets, len(data.validation))


def _finished(cfg: TrainConfig, state: dict) -> bool:
    patience = cfg.early_stopping_patience
    return state["epoch"] >= cfg.max_epochs or bool(patience and state["epochs_without_improvement"] >= patience)
