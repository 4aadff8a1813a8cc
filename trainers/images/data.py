"""Image-folder data (``train/<class>/*.png``, as torchvision's ``ImageFolder`` and Hugging Face's ``imagefolder``
read it), decoded once per study into uint8 tensors at the model's input size and cached, as text is tokenized once;
augmentation is applied per batch on those tensors (:mod:`trainers.images.augment`).

Example::

    >>> split = ImageSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [0, 1])
    >>> len(split + split), split.subset([1]).labels
    (4, [1])
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from trainers.csv_files import DataError
from trainers.data import subset_rows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageSplit:
    pixels: torch.Tensor  # uint8 [rows, 3, size, size]
    labels: list[int]
    teacher: torch.Tensor | None = None  # distillation: a teacher's logits per row (trainers.distill)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: Sequence[int]) -> ImageSplit:
        teacher = self.teacher[list(rows)] if self.teacher is not None else None
        return ImageSplit(self.pixels[list(rows)], [self.labels[i] for i in rows], teacher)

    def __add__(self, other: ImageSplit) -> ImageSplit:
        if (self.teacher is None) != (other.teacher is None):
            raise DataError("rows with a teacher's outputs and rows without cannot train together")
        teacher = torch.cat([self.teacher, other.teacher]) if self.teacher is not None and other.teacher is not None \
            else None
        return ImageSplit(torch.cat([self.pixels, other.pixels]), self.labels + other.labels, teacher)

    def digest(self) -> str:
        digest = hashlib.sha256(self.pixels.numpy().tobytes())
        digest.update(repr(self.labels).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class PreparedImages:
    train: ImageSplit
    validation: ImageSplit
    label_names: tuple[str, ...]
    image_size: int
    regression: bool = False
    text_pair: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def with_teacher(self, outputs: torch.Tensor) -> PreparedImages:
        """The training images with a teacher's logits on them: fine-tuning then distils (:mod:`trainers.distill`)."""
        if len(outputs) != len(self.train):
            raise DataError(f"the teacher's outputs cover {len(outputs)} rows, the split has {len(self.train)}")
        return dataclasses.replace(self, train=dataclasses.replace(self.train, teacher=outputs.float()))

    def with_validation_in_training(self) -> PreparedImages:
        return dataclasses.replace(self, train=self.train + self.validation)

    def profile(self, split: ImageSplit) -> dict:
        counts = [split.labels.count(i) for i in range(self.num_labels)]
        return {"num_rows": len(split), "image_size": self.image_size,
                "label_counts": dict(zip(self.label_names, counts, strict=True))}


def scan(folder: str | Path) -> tuple[list[Path], list[str]]:
    """(image files, their class names) of an image folder; names what is wrong with its layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give an image folder laid out as {folder}/<class>/<image>")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class subfolders; lay it out as {folder}/<class>/<image>.png")
    files, labels = [], []
    for cls in classes:
        for path in sorted(p for p in cls.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path}: not an image file ({path.suffix or 'no suffix'}); keep only images "
                                f"({', '.join(IMAGE_SUFFIXES)}) in class folders")
            files.append(path)
            labels.append(cls.name)
    if not files:
        raise DataError(f"{folder}: its class folders hold no images")
    return files, labels


def decode(path: Path, size: int) -> torch.Tensor:
    """One image as uint8 [3, size, size]: RGB (grayscale repeated), shorter side resized to ``size``, centre
    crop."""
    try:
        with Image.open(path) as file:
            rgb = file.convert("RGB")
        scale = size / min(rgb.size)
        width, height = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
        resized = rgb.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        square = resized.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: cannot be read as an image ({type(err).__name__}); replace or remove it") from None


def prepare_images(train_dir: str | Path, validation_dir: str | Path, image_size: int, *,
                   train_limit: int | None = None, validation_limit: int | None = None, seed: int = 0,
                   stratify: bool = True, cache_dir: str | Path | None = None) -> PreparedImages:
    """Both splits decoded once (and cached by the files' contents and the settings)."""
    train_files, train_raw = scan(train_dir)
    val_files, val_raw = scan(validation_dir)
    names = tuple(sorted(set(train_raw)))
    if len(names) < 2:
        raise DataError(f"{train_dir}: needs at least two class folders, found {list(names)}")
    if unseen := sorted(set(val_raw) - set(names)):
        raise DataError(f"{validation_dir}: classes {unseen[:5]} have no folder in the training data")
    ids = {name: i for i, name in enumerate(names)}
    train_rows = subset_rows(train_raw, train_limit, seed, stratify)
    val_rows = subset_rows(val_raw, validation_limit, seed, stratify)
    chosen = [train_files[i] for i in train_rows], [val_files[i] for i in val_rows]
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256(str(image_size).encode())
        for path in chosen[0] + [Path("|")] + chosen[1]:
            key.update(path.read_bytes() if path.name != "|" else b"|")
        cache_file = Path(cache_dir) / f"images-{key.hexdigest()[:24]}.pt"
        if cache_file.is_file():
            try:  # tensors only (weights_only): a cache file cannot run code when it is read
                pixels = torch.load(cache_file, weights_only=True)
                return _prepared(pixels, train_rows, val_rows, train_raw, val_raw, ids, names, image_size)
            except (pickle.UnpicklingError, KeyError, RuntimeError):
                pass
    pixels = {"train": torch.stack([decode(p, image_size) for p in chosen[0]]),
              "validation": torch.stack([decode(p, image_size) for p in chosen[1]])}
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(pixels, cache_file.with_suffix(".tmp"))
        cache_file.with_suffix(".tmp").replace(cache_file)
    return _prepared(pixels, train_rows, val_rows, train_raw, val_raw, ids, names, image_size)


def _prepared(pixels: dict, train_rows: list[int], val_rows: list[int], train_raw: list[str], val_raw: list[str],
              ids: dict[str, int], names: tuple[str, ...], image_size: int) -> PreparedImages:
    return PreparedImages(ImageSplit(pixels["train"], [ids[train_raw[i]] for i in train_rows]),
                          ImageSplit(pixels["validation"], [ids[val_raw[i]] for i in val_rows]), names, image_size)
