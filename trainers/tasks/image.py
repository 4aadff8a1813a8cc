"""``task=image_classification``: an ImageNet backbone (:mod:`trainers.images.backbones`) fine-tuned on image-folder
data (``data.train_path``/``data.validation_path`` folders of ``<class>/<image>`` files), with augmentation as search
dimensions. Everything that opens an image lives here and under :mod:`trainers.images`.

Example (decoding only, no training)::

    from trainers.tasks import DataSource, load_task
    source = DataSource(Path("data/fashion_mnist/train"), Path("data/fashion_mnist/validation"),
                        settings={"image_size": 64}, train_limit=100)
    data = load_task("image_classification").prepare(source, "efficientnet_lite0", max_length=0, cache_dir=None)
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

from trainers.config import TrainConfig
from trainers.csv_files import DataError
from trainers.heads import ClassificationHead
from trainers.images import loop
from trainers.images import model as image_model
from trainers.images.backbones import BACKBONES
from trainers.images.data import PreparedImages, decode, prepare_images, scan
from trainers.reporting import Reporter
from trainers.tasks.base import DataSource, ResolvedModel, SourceError, TaskInfo


class ImageTask:
    def __init__(self, info: TaskInfo) -> None:
        self.info = info

    def resolve_model(self, name_or_path: str, build_if_missing: str | None) -> ResolvedModel:
        """The backbone and its blocks (no input-length limit: data.image_size has its own range); a backbone whose
        weights package is not installed is named with the fix."""
        if name_or_path not in BACKBONES:
            raise SourceError("model.name_or_path", f"{name_or_path!r} is not an image backbone; the backbones are "
                                                    f"{sorted(BACKBONES)} (model=efficientnet_lite0, ...)")
        if not BACKBONES[name_or_path].weights_installed():
            raise SourceError("model.name_or_path", f"{name_or_path}'s ImageNet weights are not installed; "
                                                    "`make install` installs them (see pyproject.toml)")
        blocks = len(image_model.ImageClassifier(name_or_path, ("a", "b"), pretrained=False).parts()[1])
        return ResolvedModel(name_or_path, blocks)

    def check_source(self, source: DataSource) -> None:
        for key, path in (("data.train_path", source.train_path), ("data.validation_path", source.validation_path)):
            try:
                _, labels = scan(path)
            except DataError as err:
                raise SourceError(key, str(err)) from None
            if key == "data.train_path" and len(set(labels)) < 2:
                raise SourceError(key, f"{path}: needs at least two class folders, found {sorted(set(labels))}")
        if source.settings.get("unlabeled_path"):
            raise SourceError("data.unlabeled_path", "unlabeled rows are built for the text tasks; an image study "
                                                     "distils on its labelled images (remove data.unlabeled_path)")
        size = source.settings.get("image_size")
        if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 1024:
            raise SourceError("data.image_size", f"must be a whole number of pixels in 16..1024, got {size!r}")

    def prepare(self, source: DataSource, model: str, *, max_length: int, cache_dir: Path | None) -> PreparedImages:
        try:
            return prepare_images(source.train_path, source.validation_path, int(source.settings["image_size"]),
                                  train_limit=source.train_limit, validation_limit=source.validation_limit,
                                  seed=source.seed, stratify=source.stratify, cache_dir=cache_dir)
        except DataError as err:
            key = "data.validation_path" if str(source.validation_path) in str(err) else "data.train_path"
            raise SourceError(key, str(err)) from None

    def fine_tune(self, cfg: TrainConfig, data: PreparedImages, reporter: Reporter) -> dict[str, float] | None:
        return loop.fine_tune(cfg, data, reporter)

    def validation_outputs(self, folder: Path, data: PreparedImages, batch_size: int) -> tuple[torch.Tensor, Any]:
        return loop.predict(image_model.load(folder), data.validation, batch_size, torch.device("cpu"))

    def training_outputs(self, folder: Path, data: PreparedImages, batch_size: int) -> torch.Tensor:
        """The teacher sees each training image as validation does (no augmentation)."""
        return loop.predict(image_model.load(folder), data.train, batch_size, torch.device("cpu"))[0]

    def with_teacher(self, data: PreparedImages, outputs: torch.Tensor) -> PreparedImages:
        return data.with_teacher(outputs)

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return ClassificationHead().combine(outputs)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return ClassificationHead().metrics(outputs, targets)

    def predictor(self, folder: Path) -> ImagePredictor:
        return ImagePredictor(folder)

    def sample_inputs(self, source: DataSource, rows: int) -> list[Any]:
        """``rows`` validation image files spread over the folder (so every class shows up)."""
        files = scan(source.validation_path)[0]
        return [str(p) for p in files[:: max(1, len(files) // rows)][:rows]]

    def export_onnx(self, folder: Path, target: Path) -> Path:
        """``pixel_values`` [batch, 3, size, size] (normalized as ``config.json`` says) -> ``logits``."""
        model = image_model.load(folder).eval()
        example = torch.rand(2, 3, model.image_size, model.image_size)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(target), input_names=["pixel_values"], output_names=["logits"],
                              dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        return target

    def onnx_gap(self, folder: Path, onnx: Path, inputs: Sequence[Any]) -> float:
        import onnxruntime  # lazy: only an export checks itself

        predictor = ImagePredictor(folder)
        pixels = predictor.pixels(inputs)
        session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        ours = session.run(["logits"], {"pixel_values": pixels.numpy()})[0]
        with torch.no_grad():
            return float(np.abs(ours - predictor.model(pixels).numpy()).max())

    def describe_model(self, folder: Path) -> dict[str, Any]:
        model = image_model.load(folder)
        return {"pipeline_tag": "image-classification", "kind": "image classification", "pooling": None,
                "labels": list(model.label_names), "onnx_inputs": ["pixel_values"],
                "usage": ["from trainers.tasks import load_task",
                          "predict = load_task('image_classification').predictor('.')",
                          "predict(['photo.png'])"]}


class ImagePredictor:
    """A saved image model that predicts: image files (or PIL images) in, label and ``p_<label>`` per image out."""

    def __init__(self, folder: str | Path) -> None:
        self.model = image_model.load(folder).eval()

    def pixels(self, inputs: Any) -> torch.Tensor:
        rows = inputs.iloc[:, 0].tolist() if hasattr(inputs, "iloc") else list(inputs)
        images = torch.stack([decode(Path(r), self.model.image_size) for r in rows])
        return self.model.normalize(images.float().div(255))

    def __call__(self, inputs: Any) -> pd.DataFrame:
        with torch.no_grad():
            probs = self.model(self.pixels(inputs)).softmax(-1)
        names = self.model.label_names
        out = pd.DataFrame(probs.numpy(), columns=[f"p_{n}" for n in names])
        out.insert(0, "label", [names[i] for i in probs.argmax(-1).tolist()])
        return out
