"""The study's train and validation data as MLflow dataset inputs, so every run says what it was trained on.

Each split is recorded as it reached the trials (after ``train_limit``/``validation_limit`` and the task's
preparation): its file, the rows used, what they hold (label counts, or the target's range) and a digest of the
rows as the model reads them, so two studies on the same file but different subsets (or models that read the rows
differently) show different digests. hpo asks the prepared data for these (``digest()``, ``profile()``), never
reads rows. Example::

    >>> from trainers.data import PreparedData, TokenizedSplit
    >>> split = TokenizedSplit([[101, 7], [101, 8]], [0, 1])
    >>> data = PreparedData(split, split, ("neg", "pos"), pad_token_id=0)
    >>> ds = split_dataset("train", "data/train.csv", data, split, limit=None).dataset
    >>> ds.name, json.loads(ds.profile)["label_counts"], len(ds.digest)
    ('train.csv', {'neg': 1, 'pos': 1}, 16)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag

from hpo.config.spec import DataSpec

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for a dataset's role in a run (shown in the UI)


def split_dataset(context: str, path: str | Path, data: Any, split: Any, limit: int | None) -> DatasetInput:
    """One split of the prepared ``data`` as an MLflow dataset input tagged ``context`` (``train`` or
    ``validation``)."""
    profile = {**data.profile(split), "row_limit": limit}
    dataset = Dataset(name=Path(path).name, digest=split.digest()[:16], source_type="local",
                      source=json.dumps({"uri": str(path)}), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, context)])


def study_datasets(d: DataSpec | None, data: Any) -> list[DatasetInput]:
    """The study's train and validation splits (none when the task reads its own data)."""
    if d is None or data is None:
        return []
    return [split_dataset("train", d.train_path, data, data.train, d.train_limit),
            split_dataset("validation", d.validation_path, data, data.validation, d.validation_limit)]
