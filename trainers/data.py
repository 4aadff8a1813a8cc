"""Reading ``text,label`` CSVs, mapping labels to ids, and tokenizing each split once.

Tokenized splits hold unpadded token ids; batches are padded to their own longest row
(dynamic padding), which on short SST-2 phrases is several times cheaper than padding to
``max_length``. Prepared data can be cached on disk so every trial and every later study
on the same files reuses one tokenization.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import pickle
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from transformers import AutoTokenizer


class DataError(ValueError):
    """A data file that cannot be used as given."""


@dataclass(frozen=True)
class TokenizedSplit:
    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PreparedData:
    train: TokenizedSplit
    validation: TokenizedSplit
    label_names: tuple[str, ...]
    pad_token_id: int

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def open_text(path: str | Path) -> TextIO:
    """A CSV file for reading as text, gzip-compressed (``.gz``) or not."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_csv(path: str | Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[str]]:
    """Returns (texts, raw labels as strings); names the missing column and the columns present."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with _readable(path), open_text(path) as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in columns:
                raise DataError(f"{path}: no column '{column}' (columns: {columns})")
        texts, labels = [], []
        for row in reader:
            texts.append(row[text_column] or "")
            labels.append((row[label_column] or "").strip())
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts, labels


def label_names_for(raw_labels: Sequence[str]) -> tuple[str, ...]:
    """Sorted distinct labels: numerically when every label is an integer, else lexically."""
    distinct = set(raw_labels)
    if all(_is_int(x) for x in distinct):
        return tuple(sorted(distinct, key=int))
    return tuple(sorted(distinct))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def subsample(texts: list[str], labels: list[str], limit: int | None, seed: int,
              stratified: bool = False) -> tuple[list[str], list[str]]:
    """A seeded random subset of ``limit`` rows (all rows when ``limit`` is None). ``stratified``: each label keeps
    its share of the rows (largest remainders get the rounding), so a rare class is not lost to a small limit.

    >>> _, kept = subsample(list("abcdefghij"), list("0000000011"), 5, seed=0, stratified=True)
    >>> sorted(kept)
    ['0', '0', '0', '0', '1']
    """
    if limit is None or limit >= len(texts):
        return texts, labels
    rng = random.Random(seed)
    if not stratified:
        order = rng.sample(range(len(texts)), limit)
    else:
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        shares = {label: limit * len(rows) / len(texts) for label, rows in sorted(by_label.items())}
        counts = {label: int(share) for label, share in shares.items()}
        for label in sorted(shares, key=lambda x: counts[x] - shares[x])[: limit - sum(counts.values())]:
            counts[label] += 1
        order = [i for label, rows in sorted(by_label.items()) for i in rng.sample(rows, counts[label])]
        rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


def tokenize(texts: Sequence[str], tokenizer, max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def prepare_data(
    train_path: str | Path,
    validation_path: str | Path,
    tokenizer_path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int = 128,
    train_limit: int | None = None,
    validation_limit: int | None = None,
    seed: int = 0,
    stratify: bool = False,
    cache_dir: str | Path | None = None,
) -> PreparedData:
    """Reads, maps labels and tokenizes both splits, reusing a disk cache keyed by every input. ``stratify``: the
    limits keep each label's share of the rows (:func:`subsample`)."""

    key_parts = [
        _file_digest(train_path), _file_digest(validation_path), str(tokenizer_path), text_column,
        label_column, str(max_length), str(train_limit), str(validation_limit), str(seed),
    ] + (["stratified"] if stratify else [])
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"{key}.pt"
        if cache_file.is_file():
            try:  # plain containers only (weights_only): a cache file cannot run code when it is read
                return _from_plain(torch.load(cache_file, weights_only=True))
            except (pickle.UnpicklingError, KeyError, TypeError, RuntimeError):
                pass  # written by an older hpo, or not ours: tokenize again and replace it

    train_texts, train_raw = subsample(*read_csv(train_path, text_column, label_column), train_limit, seed, stratify)
    val_texts, val_raw = subsample(*read_csv(validation_path, text_column, label_column), validation_limit, seed,
                                   stratify)
    names = label_names_for(train_raw)
    if len(names) < 2:
        raise DataError(f"{train_path}: needs at least two distinct labels, found {list(names)}")
    unseen = sorted(set(val_raw) - set(names))
    if unseen:
        raise DataError(f"{validation_path}: labels {unseen[:5]} never occur in the training file")
    ids = {name: i for i, name in enumerate(names)}

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
    prepared = PreparedData(
        train=TokenizedSplit(tokenize(train_texts, tokenizer, max_length), [ids[x] for x in train_raw]),
        validation=TokenizedSplit(tokenize(val_texts, tokenizer, max_length), [ids[x] for x in val_raw]),
        label_names=names,
        pad_token_id=tokenizer.pad_token_id or 0,
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        torch.save(_to_plain(prepared), tmp)
        tmp.replace(cache_file)
    return prepared


def _to_plain(data: PreparedData) -> dict:
    return {"train": vars(data.train), "validation": vars(data.validation), "label_names": list(data.label_names),
            "pad_token_id": data.pad_token_id}


def _from_plain(plain: dict) -> PreparedData:
    return PreparedData(train=TokenizedSplit(**plain["train"]), validation=TokenizedSplit(**plain["validation"]),
                        label_names=tuple(plain["label_names"]), pad_token_id=int(plain["pad_token_id"]))


def _file_digest(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    order = list(range(len(split)))
    length = lambda i: len(split.input_ids[i])
    if shuffle_seed is None:
        groups = _chunks(evaluation_order(split), batch_size)
    else:
        rng = random.Random(shuffle_seed)
        rng.shuffle(order)
        groups = []
        for bucket in _chunks(order, batch_size * bucket_batches):
            groups.extend(_chunks(sorted(bucket, key=length), batch_size))
        rng.shuffle(groups)
    for rows in groups:
        yield _collate(split, rows, pad_token_id)


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
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.tensor([split.labels[i] for i in rows], dtype=torch.long),
    }

def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV file, checked to have a first row (for checks that must not read it all)."""
    with _readable(path), open_text(path) as f:
        reader = csv.reader(f)
        header, first = next(reader, None), next(reader, None)
    if not header:
        raise DataError(f"{path}: empty file; it needs a header row (e.g. text,label) and data rows")
    if first is None:
        raise DataError(f"{path}: a header and no rows; add data rows")
    return header


@contextlib.contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turns what a file that is not UTF-8 CSV text raises into a DataError that says so."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset "
                        f"{err.start}); save it as UTF-8") from None
    except (csv.Error, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not a CSV text file ({err}); give a comma-separated text file "
                        "(gzip-compressed as .gz if you like)") from None
