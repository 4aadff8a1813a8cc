"""Batches from a tokenized split: dynamically padded (each batch to its own longest row), bucketed by length for
training so a batch holds rows of similar length while the epoch's order stays random, and cut into each worker's
share of the global batch when a trial trains on several workers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from trainers.data import TokenizedSplit
from trainers.distributed import Workers


def batches(
    split: TokenizedSplit,
    batch_size: int,
    pad_token_id: int,
    *,
    shuffle_seed: int | None = None,
    bucket_batches: int = 50,
) -> Iterator[dict[str, torch.Tensor]]:
    """Dynamically padded batches.

    Training (``shuffle_seed`` given): rows are shuffled, cut into buckets of ``bucket_batches``
    batches, sorted by length inside each bucket, and the batches shuffled again, so a batch
    holds rows of similar length (little padding) while the epoch order stays random.
    Evaluation: rows sorted by length (the order does not matter for metrics).
    """
    groups = _chunks(evaluation_order(split), batch_size) if shuffle_seed is None \
        else _training_groups(split, batch_size, shuffle_seed, bucket_batches)
    for rows in groups:
        yield _collate(split, rows, pad_token_id)


@dataclass(frozen=True)
class Step:
    """One optimizer step's rows on this worker: its share of the global batch (:mod:`trainers.distributed`)."""

    batch: dict[str, torch.Tensor]
    rows: int  # the global batch's rows, which the step's mean gradient is over
    stand_in: bool = False  # no row fell to this worker: it trains one at zero weight, to join the gradients' sum


def training_steps(split: TokenizedSplit, batch_size: int, pad_token_id: int, shuffle_seed: int,
                   workers: Workers | None = None) -> Iterator[Step]:
    """An epoch's steps: the global batches of :func:`batches` (every worker walks the same seeded order), each
    cut down to this worker's share."""
    workers = workers or Workers()
    for rows in _training_groups(split, batch_size, shuffle_seed):
        mine = workers.share(rows)
        yield Step(_collate(split, mine or rows[:1], pad_token_id), len(rows), stand_in=not mine)


def _training_groups(split: TokenizedSplit, batch_size: int, shuffle_seed: int,
                     bucket_batches: int = 50) -> list[list[int]]:
    order = list(range(len(split)))
    length = lambda i: len(split.input_ids[i])  # noqa: E731
    rng = random.Random(shuffle_seed)
    rng.shuffle(order)
    groups = []
    for bucket in _chunks(order, batch_size * bucket_batches):
        groups.extend(_chunks(sorted(bucket, key=length), batch_size))
    rng.shuffle(groups)
    return groups


def evaluation_order(split: TokenizedSplit) -> list[int]:
    """The row order of evaluation batches: by length (least padding), ties in file order."""
    return sorted(range(len(split)), key=lambda i: len(split.input_ids[i]))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _collate(split: TokenizedSplit, rows: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One tensor construction per batch (not per row): collation stays off the training's critical path."""
    sequences = [split.input_ids[i] for i in rows]
    lengths = torch.tensor([len(ids) for ids in sequences])
    width = int(lengths.max())
    input_ids = torch.tensor([ids + [pad_token_id] * (width - len(ids)) for ids in sequences], dtype=torch.long)
    attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    targets = [split.labels[i] for i in rows]
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.tensor(targets, dtype=torch.float32 if isinstance(targets[0], float) else torch.long),
    }
    if split.teacher is not None:
        batch["teacher"] = torch.tensor([split.teacher[i] for i in rows], dtype=torch.float32)
    if split.token_type_ids is not None:  # padding rows are type 0, as the tokenizer pads them
        types = [split.token_type_ids[i] for i in rows]
        batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types], dtype=torch.long)
    return batch
