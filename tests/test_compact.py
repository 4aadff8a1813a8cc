"""Compact checkpoints: frozen layers are never written, the base is checked, the full model is the same model."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from trainers import TextClassifier, compact, load_model
from trainers.compact import BaseModel, BaseModelChanged
from trainers.modeling import freeze, load_classifier

IDS = torch.tensor([[101, 2204, 3185, 102, 0], [101, 3532, 102, 0, 0]])
MASK = (IDS != 0).long()


def _trained(tiny_bert, depth: int) -> TextClassifier:
    torch.manual_seed(0)
    classifier = load_classifier(tiny_bert, ["neg", "pos"], pooling="mean", dropout=0.2)
    freeze(classifier.model, depth)
    with torch.no_grad():  # "training": every trainable parameter moves away from the base
        for p in classifier.model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    return classifier.eval()


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_only_trainable_parameters_are_written(tiny_bert, tmp_path, depth):
    classifier = _trained(tiny_bert, depth)
    compact.save(classifier, tmp_path, BaseModel.of(classifier, tiny_bert))
    stored = load_file(tmp_path / compact.WEIGHTS_FILE)
    trainable = {n for n, p in classifier.model.named_parameters() if p.requires_grad}
    assert set(stored) == trainable
    assert not any(n.startswith("bert.embeddings") for n in stored) or depth == 0


def test_the_compact_folder_reloads_the_same_model_and_exports_a_full_one(tiny_bert, tmp_path):
    classifier = _trained(tiny_bert, 1)
    compact.save(classifier, tmp_path / "compact", BaseModel.of(classifier, tiny_bert))
    reloaded = load_model(tmp_path / "compact").eval()
    torch.testing.assert_close(reloaded(IDS, MASK), classifier(IDS, MASK), rtol=0, atol=0)

    full = compact.materialize(tmp_path / "compact", tmp_path / "full")
    assert not compact.is_compact(full) and (full / "tokenizer_config.json").is_file()
    exported = load_model(full).eval()
    assert exported.pooling == "mean" and exported.config.id2label == {0: "neg", 1: "pos"}
    torch.testing.assert_close(exported(IDS, MASK), classifier(IDS, MASK), rtol=0, atol=0)


def test_a_changed_base_model_is_refused(tiny_bert, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    classifier = _trained(base, 2)
    compact.save(classifier, tmp_path / "compact", BaseModel.of(classifier, base))
    other = load_classifier(base, ["neg", "pos"])
    with torch.no_grad():
        other.model.bert.embeddings.word_embeddings.weight.add_(1.0)
    other.model.bert.save_pretrained(base)  # someone replaced the base model's weights
    with pytest.raises(BaseModelChanged, match="not the one this checkpoint was trained on"):
        load_model(tmp_path / "compact")
    assert json.loads((tmp_path / "compact" / compact.BASE_FILE).read_text())["name_or_path"] == str(base)
