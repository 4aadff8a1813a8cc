"""The study's train and validation data as MLflow dataset inputs, so every run says what it was trained on.

Each split is recorded as it reached the trials (after ``train_limit``/``validation_limit`` and tokenization):
its file, the rows used, their label counts, and a digest of the rows themselves, so two studies on the
same file but different subsets (or tokenizers) show different digests. Example::

    >>> from trainers.data import TokenizedSplit
    >>> split = TokenizedSplit(input_ids=[[101, 7], [101, 8]], labels=[0, 1])
    >>> ds = split_dataset("train", "data/train.csv", split, ("neg", "pos"), limit=None).dataset
    >>> ds.name, json.loads(ds.profile)["label_counts"], len(ds.digest)
    ('train.csv', {'neg': 1, 'pos': 1}, 16)
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag

from hpo.config.spec import DataSpec
from trainers.data import PreparedData, TokenizedSplit

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for a dataset's role in a run (shown in the UI)


def split_dataset(context: str, path: str | Path, split: TokenizedSplit, label_names: tuple[str, ...],
                  limit: int | None) -> DatasetInput:
    """One split as an MLflow dataset input tagged ``context`` (``train`` or ``validation``)."""
    digest = hashlib.sha256()
    for ids, label in zip(split.input_ids, split.labels, strict=True):
        digest.update(json.dumps([ids, label]).encode())
    counts = Counter(label_names[label] for label in split.labels)
    profile = {"num_rows": len(split), "label_counts": {name: counts[name] for name in label_names},
               "row_limit": limit}
    dataset = Dataset(name=Path(path).name, digest=digest.hexdigest()[:16], source_type="local",
                      source=json.dumps({"uri": str(path)}), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, context)])


def study_datasets(d: DataSpec, data: PreparedData) -> list[DatasetInput]:
    """The study's train and validation splits."""
    return [split_dataset("train", d.train_path, data.train, data.label_names, d.train_limit),
            split_dataset("validation", d.validation_path, data.validation, data.label_names, d.validation_limit)]
