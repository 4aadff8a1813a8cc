"""Text tasks: a label (``text_classification``) or a number (``text_regression``) per text or per pair of texts,
with a pretrained transformers encoder and a new head. Everything that tokenizes lives here and below.

Example (a tiny random BERT, a few seconds on a CPU)::

    from trainers.tasks import DataSource, load_task
    task = load_task("text_regression")
    source = DataSource(Path("data/stsb/train.csv.gz"), Path("data/stsb/dev.csv.gz"),
                        {"text": "sentence1", "text_pair": "sentence2", "label": "score"}, train_limit=64)
    data = task.prepare(source, "/tmp/tiny-bert", max_length=64, cache_dir=None)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from trainers.checkpoint import load_model
from trainers.config import TrainConfig
from trainers.csv_files import DataError, read_columns, read_header
from trainers.data import PreparedData, prepare_data
from trainers.heads import head_for
from trainers.loop import fine_tune, predict
from trainers.modeling import REGRESSION_OUTPUT
from trainers.pretrained import resolve_pretrained
from trainers.reporting import Reporter
from trainers.tasks.base import DataSource, ResolvedModel, SourceError, TaskInfo

_EXTERNAL_DATA_BYTES = 1_500_000_000  # ONNX's protobuf holds 2 GB: larger weights go beside it (.onnx.data)
MAX_LENGTH = 512  # what prediction truncates to (the position embeddings of BERT-like models)


class TextTask:
    """A text classifier or regressor (``info.regression``) over single texts or pairs (``columns["text_pair"]``)."""

    def __init__(self, info: TaskInfo) -> None:
        self.info = info

    def resolve_model(self, name_or_path: str, build_if_missing: str | None) -> ResolvedModel:
        return resolve_pretrained(name_or_path, build_if_missing)

    def check_source(self, source: DataSource) -> None:
        if not source.columns.get("text") or not source.columns.get("label"):
            raise SourceError("data.text_column", "a text task needs data.text_column and data.label_column")
        for key, path in (("data.train_path", source.train_path), ("data.validation_path", source.validation_path)):
            try:
                present = read_header(path)
            except DataError as err:
                raise SourceError(key, str(err)) from None
            for role, column in source.columns.items():
                if column is not None and column not in present:
                    raise SourceError(f"data.{role}_column", f"{Path(path).name} has no column {column!r}; its "
                                                             f"columns are {present}")
        if unlabeled := source.settings.get("unlabeled_path"):
            try:
                present = read_header(unlabeled)
            except DataError as err:
                raise SourceError("data.unlabeled_path", str(err)) from None
            needed = [str(c[role]) for role in ("text", "text_pair") if (c := source.columns).get(role)]
            if missing := [column for column in needed if column not in present]:
                raise SourceError("data.unlabeled_path", f"{Path(unlabeled).name} has no column {missing[0]!r} (the "
                                                         f"texts, as in the training file); its columns are {present}")

    def prepare(self, source: DataSource, model: str, *, max_length: int, cache_dir: Path | None) -> PreparedData:
        c = source.columns
        try:
            return prepare_data(
                source.train_path, source.validation_path, model, text_column=str(c["text"]),
                label_column=str(c["label"]), text_pair_column=c.get("text_pair"), regression=self.info.regression,
                max_length=max_length, train_limit=source.train_limit, validation_limit=source.validation_limit,
                seed=source.seed, stratify=source.stratify, cache_dir=cache_dir,
                unlabeled_path=source.settings.get("unlabeled_path"))
        except DataError as err:
            key = "data.validation_path" if str(source.validation_path) in str(err) else "data.train_path"
            raise SourceError(key, str(err)) from None

    def fine_tune(self, cfg: TrainConfig, data: PreparedData, reporter: Reporter) -> dict[str, float] | None:
        return fine_tune(cfg, data, reporter)

    def validation_outputs(self, folder: Path, data: PreparedData, batch_size: int) -> tuple[torch.Tensor, Any]:
        return predict(load_model(folder), data.validation, data.pad_token_id, batch_size, torch.device("cpu"))

    def training_outputs(self, folder: Path, data: PreparedData, batch_size: int) -> torch.Tensor:
        return predict(load_model(folder), data.train, data.pad_token_id, batch_size, torch.device("cpu"))[0]

    def with_teacher(self, data: PreparedData, outputs: torch.Tensor) -> PreparedData:
        return data.with_teacher(outputs)

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return head_for(self.info.regression).combine(outputs)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return head_for(self.info.regression).metrics(outputs, targets)

    def predictor(self, folder: Path) -> TextPredictor:
        return TextPredictor(folder)

    def sample_inputs(self, source: DataSource, rows: int) -> list[Any]:
        c = source.columns
        columns = [str(c["text"]), *([str(c["text_pair"])] if c.get("text_pair") else []), str(c["label"])]
        values = read_columns(source.validation_path, columns)
        return list(zip(values[0], values[1], strict=True))[:rows] if c.get("text_pair") else values[0][:rows]

    def export_onnx(self, folder: Path, target: Path) -> Path:
        """``TextClassifier(input_ids, attention_mask[, token_type_ids]) -> logits`` as ONNX, with dynamic batch
        and sequence axes (token type ids for a model trained on pairs)."""
        predictor = TextPredictor(folder)
        # Two rows of different lengths: no axis is traced at size 0 or 1, so none is specialized.
        example = predictor.encode(predictor.rows_of(
            [("an example sentence for tracing", "a second one"), ("another", "more")] if predictor.pairs
            else ["an example sentence for tracing", "another"]))
        names = predictor.input_names
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        classifier = predictor.classifier
        weights = sum(p.numel() * p.element_size() for p in classifier.parameters())
        # The exporter narrates each pass on stdout and warns about torchvision ops a text model never uses.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(classifier, tuple(example[k] for k in names), str(target),
                              input_names=list(names), output_names=["logits"], dynamo=True,
                              dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
                              external_data=weights > _EXTERNAL_DATA_BYTES, verbose=False)
        return target

    def onnx_gap(self, folder: Path, onnx: Path, inputs: Sequence[Any]) -> float:
        import onnxruntime  # lazy: only an export checks itself (onnxruntime takes a second to import)

        predictor = TextPredictor(folder)
        rows = predictor.rows_of(inputs)
        session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        batch = predictor.encode(rows, tensors="np")
        ours = session.run(["logits"], {k: batch[k].astype("int64") for k in predictor.input_names})[0]
        return float(np.abs(ours - predictor.logits(rows).numpy()).max())

    def describe_model(self, folder: Path) -> dict[str, Any]:
        predictor = TextPredictor(folder)
        config = predictor.classifier.config
        example = "[('A man plays a guitar.', 'A man is playing music.')]" if predictor.pairs \
            else "['a gorgeous film']"
        kind = "text regression" if self.info.regression else "text classification"
        return {
            "pipeline_tag": "text-classification", "kind": kind, "pooling": getattr(config, "hpo_pooling", "cls"),
            "labels": [] if self.info.regression else predictor.labels,
            "usage": ["from trainers.tasks import load_task",
                      f"predict = load_task({self.info.name!r}).predictor('.')", f"predict({example})"],
            "onnx_inputs": list(predictor.input_names),
        }


class TextPredictor:
    """A saved text model that predicts: a table of the label and ``p_<label>`` per row (classification) or of
    ``score`` (regression). Rows are texts, or (text, text pair) tuples for a model trained on pairs."""

    def __init__(self, folder: str | Path) -> None:
        hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in a command's output
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.classifier = load_model(folder).eval()
        config = self.classifier.config
        self.pairs = bool(getattr(config, "hpo_text_pair", False))
        self.regression = getattr(config, "problem_type", None) == "regression"
        id2label: dict = config.id2label or {}
        self.labels = [str(id2label[i]) for i in range(len(id2label))]  # class names, in output order
        types = self.pairs and "token_type_ids" in self.tokenizer.model_input_names
        self.input_names = ("input_ids", "attention_mask", *(["token_type_ids"] if types else []))

    def rows_of(self, inputs: Any) -> list[Any]:
        """A list of texts or pairs, from a list or a DataFrame (one column, or two for pairs)."""
        if hasattr(inputs, "iloc"):
            frame = inputs.iloc[:, :2] if self.pairs else inputs.iloc[:, 0]
            return [tuple(r) for r in frame.itertuples(index=False)] if self.pairs else frame.tolist()
        rows = list(inputs)
        if self.pairs and any(not isinstance(r, (tuple, list)) or len(r) != 2 for r in rows):
            raise ValueError("this model was trained on pairs of texts: give (text, text_pair) rows")
        return rows

    def encode(self, rows: list[Any], tensors: str = "pt") -> Any:
        first = [r[0] for r in rows] if self.pairs else rows
        second = [r[1] for r in rows] if self.pairs else None
        return self.tokenizer(first, second, padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors=tensors)

    def logits(self, rows: list[Any]) -> torch.Tensor:
        batch = self.encode(rows)
        with torch.no_grad():
            return self.classifier(*(batch[k] for k in self.input_names))

    def __call__(self, inputs: Any) -> pd.DataFrame:
        outputs = self.logits(self.rows_of(inputs))
        if self.regression:
            return pd.DataFrame({REGRESSION_OUTPUT: outputs[:, 0].numpy()})
        probs = outputs.softmax(-1)
        out = pd.DataFrame(probs.numpy(), columns=[f"p_{name}" for name in self.labels])
        out.insert(0, "label", [self.labels[i] for i in probs.argmax(-1).tolist()])
        return out
