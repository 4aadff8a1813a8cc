"""The study's best model, usable outside hpo and MLflow: a Hugging Face folder with a model card, and an ONNX file
checked against PyTorch. Example::

    folder = export_folder(best, "out/sst2_minilm", card)     # from_pretrained-loadable, README.md model card
    export_onnx(folder, folder / "model.onnx")                # logits = PyTorch's within 1e-4 (onnxruntime)
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from pathlib import Path

import onnxruntime
import torch

from hpo.inference import load

ONNX_INPUTS = ("input_ids", "attention_mask")
_EXTERNAL_DATA_BYTES = 1_500_000_000  # ONNX's protobuf holds 2 GB: larger weights go beside it (.onnx.data)


def export_folder(best: Path, out: Path, card: str) -> Path:
    """Copies the best model's folder (weights, tokenizer, config with labels and ``hpo_pooling``) to ``out``
    and writes ``card`` as its ``README.md``."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose an empty or new folder")
    shutil.copytree(best, out, dirs_exist_ok=True)
    (out / "README.md").write_text(card)
    return out


def export_onnx(folder: Path, target: Path) -> Path:
    """``TextClassifier(input_ids, attention_mask) -> logits`` as ONNX with dynamic batch and sequence axes."""
    tokenizer, classifier = load(folder)
    # Two rows of different lengths: no axis is traced at size 0 or 1, so none is specialized.
    example = tokenizer(["an example sentence for tracing", "another"], padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    weights = sum(p.numel() * p.element_size() for p in classifier.parameters())
    # The exporter narrates each pass on stdout and warns about torchvision ops a text model never uses.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(classifier, (example["input_ids"], example["attention_mask"]), str(target),
                          input_names=list(ONNX_INPUTS), output_names=["logits"], dynamo=True,
                          dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence}),
                          external_data=weights > _EXTERNAL_DATA_BYTES, verbose=False)
    return target


def onnx_logits(model: Path, tokenizer, texts: list[str], max_length: int = 512):
    """Logits from onnxruntime on the CPU (a numpy array)."""
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return session.run(["logits"], {k: batch[k].astype("int64") for k in ONNX_INPUTS})[0]
