import csv

import pytest

from trainers.batching import batches
from trainers.csv_files import DataError, label_names_for
from trainers.data import TokenizedSplit, prepare_data


def _write(path, rows, header=("text", "label")):
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_integer_labels_sort_numerically_and_strings_lexically():
    assert label_names_for(["10", "2", "1"]) == ("1", "2", "10")
    assert label_names_for(["pos", "neg", "neutral"]) == ("neg", "neutral", "pos")


def test_string_labels_and_custom_columns(tmp_path, tiny_bert):
    rows = [("good", "pos"), ("bad", "neg"), ("fine", "neutral")]
    train = _write(tmp_path / "t.csv", rows, header=("sentence", "y"))
    data = prepare_data(train, train, tiny_bert, text_column="sentence", label_column="y")
    assert data.label_names == ("neg", "neutral", "pos")
    assert data.train.labels == [2, 0, 1]


def test_validation_label_missing_from_train_is_an_error(tmp_path, tiny_bert):
    train = _write(tmp_path / "t.csv", [("a", 0), ("b", 1)])
    dev = _write(tmp_path / "d.csv", [("c", 2)])
    with pytest.raises(DataError, match=r"labels \['2'\] never occur"):
        prepare_data(train, dev, tiny_bert)


def test_cache_is_reused(small_sst2, tiny_bert, tmp_path):
    first = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, cache_dir=tmp_path, train_limit=50)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    second = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, cache_dir=tmp_path, train_limit=50)
    assert second.train.input_ids == first.train.input_ids and len(second.train) == 50


def test_training_batches_cover_every_row_once_with_little_padding():
    lengths = [1, 9, 2, 8, 3, 7, 4, 6, 5, 5] * 10
    split = TokenizedSplit([[7] * n for n in lengths], [i % 2 for i in range(len(lengths))])
    out = list(batches(split, 10, pad_token_id=0, shuffle_seed=1, bucket_batches=10))
    assert sum(len(b["labels"]) for b in out) == len(lengths)
    assert sum(int(b["attention_mask"].sum()) for b in out) == sum(lengths)
    padded = sum(b["input_ids"].numel() for b in out)
    assert padded < 1.3 * sum(lengths)  # bucketed by length; random batches would pad to ~9 per row
