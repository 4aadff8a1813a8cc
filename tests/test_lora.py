"""LoRA as a fine-tuning method (trainers.lora): only adapters and the head train and are written; a checkpoint
reloads with its adapters; a model leaving the study has them merged and loads without peft. Tiny BERT, real SST-2."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.reporters import Interrupted, KeepLatest
from trainers import TextClassifier, TrainConfig, fine_tune, load_model, prepare_data
from trainers.checkpoint import full_model
from trainers.compact import WEIGHTS_FILE
from trainers.loop import predict
from trainers.lora import CONFIG_KEY


def test_lora_trains_adapters_and_head_only_and_exports_merged(small_sst2, tiny_bert, tmp_path):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=128, validation_limit=64)
    config = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, method="lora", lora_rank=4, lora_alpha=8,
                         lora_learning_rate=1e-2, num_threads=1, freeze_depth=1)
    with pytest.raises(Interrupted):
        fine_tune(config, data, KeepLatest(tmp_path / "ckpt", stop_after=1))

    stored = load_file(next((tmp_path / "ckpt").rglob(WEIGHTS_FILE)))
    assert stored and all("lora_" in name or "classifier" in name or "pooler" in name for name in stored)
    assert any("lora_A" in name for name in stored) and any("lora_B" in name for name in stored)

    reloaded = load_model(tmp_path / "ckpt" / "best").eval()
    assert getattr(reloaded.config, CONFIG_KEY)["r"] == 4
    logits, _ = predict(reloaded, data.validation, data.pad_token_id, 32, torch.device("cpu"))

    merged_dir = full_model(tmp_path / "ckpt" / "best", tmp_path / "merged")
    merged = TextClassifier.from_pretrained_folder(merged_dir).eval()
    assert not hasattr(merged.config, CONFIG_KEY) and not any("lora_" in n for n, _ in merged.named_parameters())
    merged_logits, _ = predict(merged, data.validation, data.pad_token_id, 32, torch.device("cpu"))
    assert torch.allclose(logits, merged_logits, atol=1e-4)

    resumed = KeepLatest(tmp_path / "ckpt2")
    fine_tune(dataclasses.replace(config, resume_from=str(tmp_path / "ckpt")), data, resumed)
    straight = KeepLatest(tmp_path / "ckpt3")
    fine_tune(config, data, straight)
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"], abs=1e-5)
