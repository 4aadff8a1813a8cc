"""Preparing a study's data once: reading the train and validation splits (:mod:`trainers.csv_files`), mapping
labels to ids (or reading float targets for regression), keeping a seeded subset, and tokenizing each split.

Tokenized splits hold unpadded token ids (:mod:`trainers.batching` pads each batch to its own longest row, which on
short SST-2 phrases is several times cheaper than padding to ``max_length``). Prepared data can be cached on disk so
every trial and every later study on the same files reuses one tokenization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from trainers.csv_files import DataError, float_targets, label_names_for, read_columns
from trainers.distill import UNLABELED


@dataclass(frozen=True)
class TokenizedSplit:
    input_ids: list[list[int]]
    labels: list  # class ids (classification) or float targets (regression)
    token_type_ids: list[list[int]] | None = None  # sentence pairs: 0 for the first text's tokens, 1 for the second's
    teacher: list[list[float]] | None = None  # distillation: a teacher's outputs per row (trainers.distill)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: Sequence[int]) -> TokenizedSplit:
        types = [self.token_type_ids[i] for i in rows] if self.token_type_ids is not None else None
        teacher = [self.teacher[i] for i in rows] if self.teacher is not None else None
        return TokenizedSplit([self.input_ids[i] for i in rows], [self.labels[i] for i in rows], types, teacher)

    def __add__(self, other: TokenizedSplit) -> TokenizedSplit:
        if (self.teacher is None) != (other.teacher is None):
            raise DataError("rows with a teacher's outputs and rows without cannot train together")
        join = lambda a, b: a + b if a is not None and b is not None else None  # noqa: E731
        return TokenizedSplit(self.input_ids + other.input_ids, self.labels + other.labels,
                              join(self.token_type_ids, other.token_type_ids), join(self.teacher, other.teacher))

    def with_teacher(self, outputs: torch.Tensor) -> TokenizedSplit:
        """These rows with a teacher's outputs for them (row ``i`` of ``outputs`` is row ``i``'s)."""
        if len(outputs) != len(self):
            raise DataError(f"the teacher's outputs cover {len(outputs)} rows, the split has {len(self)}")
        return dataclasses.replace(self, teacher=outputs.float().reshape(len(self), -1).tolist())

    def digest(self) -> str:
        """A digest of the rows as the model sees them (tokens and targets): differs when the subset or the
        tokenizer does."""
        digest = hashlib.sha256()
        for i, (ids, label) in enumerate(zip(self.input_ids, self.labels, strict=True)):
            row = [ids, label] if self.token_type_ids is None else [ids, label, self.token_type_ids[i]]
            digest.update(json.dumps(row).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class PreparedData:
    train: TokenizedSplit
    validation: TokenizedSplit
    label_names: tuple[str, ...]  # empty for regression (one float output)
    pad_token_id: int
    text_pair: bool = False  # each row is two texts (data.text_pair_column)

    @property
    def regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """The model's outputs: one per class, or one for regression."""
        return len(self.label_names) or 1

    def with_teacher(self, outputs: torch.Tensor) -> PreparedData:
        """The training rows with a teacher's outputs on them: fine-tuning then distils (:mod:`trainers.distill`)."""
        return dataclasses.replace(self, train=self.train.with_teacher(outputs))

    def with_validation_in_training(self) -> PreparedData:
        """Training rows + validation rows as the training split (validation kept for the epoch reports): a refit."""
        return dataclasses.replace(self, train=self.train + self.validation)

    def profile(self, split: TokenizedSplit) -> dict:
        """What a split holds, for a reader: rows, and the label counts or the target's range."""
        unlabeled = {"unlabeled_rows": n} if (n := sum(map(_unlabeled, split.labels))) else {}
        if self.regression:
            targets = [float(x) for x in split.labels if not _unlabeled(x)]
            return {"num_rows": len(split), "target_min": min(targets), "target_max": max(targets),
                    "target_mean": sum(targets) / len(targets), **unlabeled}
        counts = [split.labels.count(i) for i in range(len(self.label_names))]
        return {"num_rows": len(split), "label_counts": dict(zip(self.label_names, counts, strict=True)), **unlabeled}


def subsample(texts: list[str], labels: list[str], limit: int | None, seed: int,
              stratified: bool = False) -> tuple[list[str], list[str]]:
    """A seeded random subset of ``limit`` rows (all rows when ``limit`` is None). ``stratified``: each label keeps
    its share of the rows (largest remainders get the rounding), so a rare class is not lost to a small limit.

    >>> _, kept = subsample(list("abcdefghij"), list("0000000011"), 5, seed=0, stratified=True)
    >>> sorted(kept)
    ['0', '0', '0', '0', '1']
    """
    order = subset_rows(labels, limit, seed, stratified)
    return [texts[i] for i in order], [labels[i] for i in order]


def subset_rows(labels: Sequence, limit: int | None, seed: int, stratified: bool = False) -> list[int]:
    """The rows :func:`subsample` keeps, in their new order (all of them, in file order, when ``limit`` is None)."""
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    if not stratified:
        order = rng.sample(range(len(labels)), limit)
    else:
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        shares = {label: limit * len(rows) / len(labels) for label, rows in sorted(by_label.items())}
        counts = {label: int(share) for label, share in shares.items()}
        for label in sorted(shares, key=lambda x: counts[x] - shares[x])[: limit - sum(counts.values())]:
            counts[label] += 1
        order = [i for label, rows in sorted(by_label.items()) for i in rng.sample(rows, counts[label])]
        rng.shuffle(order)
    return order


def tokenize(texts: Sequence[str], tokenizer, max_length: int,
             pairs: Sequence[str] | None = None) -> tuple[list[list[int]], list[list[int]] | None]:
    """(token ids, token type ids) of each row; the type ids only for pairs (``[CLS] a [SEP] b [SEP]``), when the
    tokenizer gives them (BERT-like models do, RoBERTa-like ones do not)."""
    out = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True, max_length=max_length)
    return out["input_ids"], out.get("token_type_ids") if pairs is not None else None


def _read_split(path: str | Path, text_column: str, pair_column: str | None, label_column: str, regression: bool,
                limit: int | None, seed: int, stratify: bool) -> tuple[list[str], list[str] | None, list]:
    """(texts, second texts or None, raw labels or float targets) of the rows the limit keeps."""
    columns = [text_column, *([pair_column] if pair_column else []), label_column]
    values = read_columns(path, columns)
    labels: list = float_targets(values[-1], path, label_column) if regression else values[-1]
    # Stratifying a float target has no classes to keep: a regression subset is a plain random one.
    rows = subset_rows(labels, limit, seed, stratify and not regression)
    pick = lambda column: [column[i] for i in rows]  # noqa: E731
    return pick(values[0]), pick(values[1]) if pair_column else None, pick(labels)


def _unlabeled(label: Any) -> bool:
    """A row only a teacher labels: the class id UNLABELED, or a NaN target."""
    return label == UNLABELED or (isinstance(label, float) and math.isnan(label))


def _read_unlabeled(path: str | Path, text_column: str, pair_column: str | None) -> tuple[list[str], list[str] | None]:
    """Every row of an unlabeled file: (texts, second texts or None)."""
    values = read_columns(path, [text_column, *([pair_column] if pair_column else [])])
    return values[0], values[1] if pair_column else None


def prepare_data(
    train_path: str | Path,
    validation_path: str | Path,
    tokenizer_path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    regression: bool = False,
    max_length: int = 128,
    train_limit: int | None = None,
    validation_limit: int | None = None,
    seed: int = 0,
    stratify: bool = False,
    cache_dir: str | Path | None = None,
    unlabeled_path: str | Path | None = None,
) -> PreparedData:
    """Reads, maps labels (or reads float targets: ``regression``) and tokenizes both splits, reusing a disk cache
    keyed by every input. ``text_pair_column``: each row is a pair of texts, tokenized together. ``stratify``: the
    limits keep each label's share of the rows (:func:`subsample`). ``unlabeled_path``: every row of that file joins
    the training rows after the labelled ones, labelled UNLABELED (NaN for regression): a teacher labels them
    (:mod:`trainers.distill`)."""

    key_parts = [
        _file_digest(train_path), _file_digest(validation_path), str(tokenizer_path), text_column,
        label_column, str(max_length), str(train_limit), str(validation_limit), str(seed),
    ] + (["stratified"] if stratify else []) + ([f"pair={text_pair_column}"] if text_pair_column else []) \
        + (["regression"] if regression else []) \
        + ([f"unlabeled={_file_digest(unlabeled_path)}"] if unlabeled_path else [])
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"{key}.pt"
        if cache_file.is_file():
            try:  # plain containers only (weights_only): a cache file cannot run code when it is read
                return _from_plain(torch.load(cache_file, weights_only=True))
            except (pickle.UnpicklingError, KeyError, TypeError, RuntimeError):
                pass  # written by an older hpo, or not ours: tokenize again and replace it

    read = lambda path, limit: _read_split(path, text_column, text_pair_column, label_column,  # noqa: E731
                                           regression, limit, seed, stratify)
    train_texts, train_pairs, train_raw = read(train_path, train_limit)
    val_texts, val_pairs, val_raw = read(validation_path, validation_limit)
    names: tuple[str, ...] = ()
    if not regression:
        names = label_names_for(train_raw)
        if len(names) < 2:
            raise DataError(f"{train_path}: needs at least two distinct labels, found {list(names)}")
        unseen = sorted(set(val_raw) - set(names))
        if unseen:
            raise DataError(f"{validation_path}: labels {unseen[:5]} never occur in the training file")
        ids = {name: i for i, name in enumerate(names)}
        train_raw, val_raw = [ids[x] for x in train_raw], [ids[x] for x in val_raw]
    if unlabeled_path:
        texts, pairs = _read_unlabeled(unlabeled_path, text_column, text_pair_column)
        train_texts += texts
        train_pairs = None if train_pairs is None or pairs is None else train_pairs + pairs
        train_raw += [math.nan if regression else UNLABELED] * len(texts)

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
    prepared = PreparedData(
        train=TokenizedSplit(*_tokens(train_texts, train_pairs, tokenizer, max_length, train_raw)),
        validation=TokenizedSplit(*_tokens(val_texts, val_pairs, tokenizer, max_length, val_raw)),
        label_names=names,
        pad_token_id=tokenizer.pad_token_id or 0,
        text_pair=text_pair_column is not None,
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        torch.save(_to_plain(prepared), tmp)
        tmp.replace(cache_file)
    return prepared


def _tokens(texts: list[str], pairs: list[str] | None, tokenizer, max_length: int, labels: list) -> tuple:
    ids, types = tokenize(texts, tokenizer, max_length, pairs)
    return ids, labels, types


def _to_plain(data: PreparedData) -> dict:
    return {"train": vars(data.train), "validation": vars(data.validation), "label_names": list(data.label_names),
            "pad_token_id": data.pad_token_id, "text_pair": data.text_pair}


def _from_plain(plain: dict) -> PreparedData:
    return PreparedData(train=TokenizedSplit(**plain["train"]), validation=TokenizedSplit(**plain["validation"]),
                        label_names=tuple(plain["label_names"]), pad_token_id=int(plain["pad_token_id"]),
                        text_pair=bool(plain.get("text_pair", False)))


def _file_digest(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return hashlib.sha256(path.read_bytes()).hexdigest()
