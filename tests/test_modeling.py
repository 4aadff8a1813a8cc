"""Freezing and parameter groups on a locally built tiny BERT (2 blocks, hidden 32, vocab 30522)."""

import pytest
import torch

from trainers import load_model
from trainers.modeling import count_trainable, freeze, load_classifier
from trainers.optim import param_groups, warmup_then_linear_decay

H, V, P, FF = 32, 30522, 128, 64
EMBEDDINGS = V * H + P * H + 2 * H + 2 * H  # word, position, token type, LayerNorm
BLOCK = 3 * (H * H + H) + (H * H + H) + 2 * H + (H * FF + FF) + (FF * H + H) + 2 * H
POOLER = H * H + H
HEAD = H * 2 + 2


@pytest.mark.parametrize(
    "depth, expected",  # everything; the two blocks + pooler + head; the last block + pooler + head; the top
    [(0, EMBEDDINGS + 2 * BLOCK + POOLER + HEAD), (1, BLOCK + POOLER + HEAD), (2, POOLER + HEAD)],
)
def test_freeze_depth_leaves_exact_trainable_counts(tiny_bert, depth, expected):
    classifier = load_classifier(tiny_bert, ["neg", "pos"])
    freeze(classifier.model, depth)
    assert count_trainable(classifier) == expected


def test_mean_pooling_leaves_the_unused_pooler_frozen(tiny_bert):
    classifier = load_classifier(tiny_bert, ["neg", "pos"], pooling="mean")
    assert count_trainable(classifier) == 999_138 - POOLER


def test_freeze_depth_beyond_the_model_is_an_error(tiny_bert):
    with pytest.raises(ValueError, match="0..2"):
        freeze(load_classifier(tiny_bert, ["a", "b"]).model, 3)


def test_layerwise_lr_and_no_decay_on_bias_and_layernorm(tiny_bert):
    classifier = load_classifier(tiny_bert, ["neg", "pos"])
    groups = param_groups(classifier.model, 1e-3, 0.01, layer_lr_decay=0.5)
    lr_by_depth = {g["depth"]: g["lr"] for g in groups}
    assert lr_by_depth == pytest.approx({0: 1e-3 * 0.5**3, 1: 1e-3 * 0.5**2, 2: 1e-3 * 0.5, 3: 1e-3})
    names = {id(p): n for n, p in classifier.model.named_parameters()}
    for group in groups:
        for p in group["params"]:
            no_decay = names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]
            assert group["weight_decay"] == (0.0 if no_decay else 0.01), names[id(p)]
    assert sum(p.numel() for g in groups for p in g["params"]) == 999_138


def test_param_groups_skip_frozen_parameters(tiny_bert):
    classifier = load_classifier(tiny_bert, ["neg", "pos"])
    freeze(classifier.model, 2)
    groups = param_groups(classifier.model, 1e-3, 0.01, layer_lr_decay=0.8)
    assert {g["depth"] for g in groups} == {3}
    assert sum(p.numel() for g in groups for p in g["params"]) == POOLER + HEAD


def test_warmup_then_linear_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_then_linear_decay(opt, total_steps=10, warmup_ratio=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(0.125) and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)


def test_checkpoint_reloads_with_its_pooling(tiny_bert, tmp_path):
    classifier = load_classifier(tiny_bert, ["neg", "pos"], pooling="mean").eval()
    ids = torch.tensor([[101, 2204, 3185, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    classifier.save(tmp_path)
    reloaded = load_model(tmp_path).eval()
    assert reloaded.pooling == "mean"
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}
    torch.testing.assert_close(reloaded(ids, mask), classifier(ids, mask))
