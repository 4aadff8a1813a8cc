"""The study's best model, usable outside hpo: an MLflow pyfunc, a Hugging Face folder with a model card,
and an ONNX file.

A pyfunc (not the transformers flavor) because the head may read mean-pooled states, which only
:class:`trainers.TextClassifier` reproduces. Example::

    model = mlflow.pyfunc.load_model("models:/sst2_minilm@champion")
    model.predict(["a gorgeous film", "a dull mess"])   # -> label, p_0, p_1

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

import mlflow.pyfunc

ONNX_INPUTS = ("input_ids", "attention_mask")
_EXTERNAL_DATA_BYTES = 1_500_000_000  # ONNX's protobuf holds 2 GB: larger weights go beside it (.onnx.data)


def load(path: str | Path):
    """(tokenizer, classifier in eval mode) of a folder written by ``TextClassifier.save``."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from trainers import TextClassifier

    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in a command's output
    return AutoTokenizer.from_pretrained(str(path)), TextClassifier.from_checkpoint(path).eval()


def logits(tokenizer, classifier, texts: list[str], max_length: int = 512):
    """The classifier's logits (a torch tensor, rows = texts)."""
    import torch

    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return classifier(batch["input_ids"], batch["attention_mask"])


def probabilities(tokenizer, classifier, texts: list[str], max_length: int = 512):
    """Class probabilities (a torch tensor, rows = texts)."""
    return logits(tokenizer, classifier, texts, max_length).softmax(-1)


def predictions_frame(probs, id2label: dict[int, str]):
    """A DataFrame of label and p_<label> per text."""
    import pandas as pd

    out = pd.DataFrame(probs.numpy(), columns=[f"p_{id2label[i]}" for i in range(probs.shape[1])])
    out.insert(0, "label", [id2label[i] for i in probs.argmax(-1).tolist()])
    return out


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.tokenizer, self.classifier = load(context.artifacts["checkpoint"])

    def predict(self, context, model_input: list[str], params=None):
        """Texts in (a list, or a one-column DataFrame); a DataFrame of label and p_<label> out."""
        texts = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        probs = probabilities(self.tokenizer, self.classifier, texts)
        return predictions_frame(probs, self.classifier.config.id2label)


class EnsembleModel(mlflow.pyfunc.PythonModel):
    """Several classifiers (artifacts ``member_0``, ``member_1``, ...) whose probabilities are averaged
    (``hpo ensemble``); the same input and output as :class:`TextClassifierModel`."""

    def load_context(self, context) -> None:
        names = sorted(context.artifacts, key=lambda k: int(k.rsplit("_", 1)[-1]))
        self.members = [load(context.artifacts[name]) for name in names]

    def predict(self, context, model_input: list[str], params=None):
        from hpo.ensemble import average_probabilities

        texts = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        probs = average_probabilities([probabilities(tokenizer, classifier, texts)
                                       for tokenizer, classifier in self.members])
        return predictions_frame(probs, self.members[0][1].config.id2label)


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
    import torch

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
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return session.run(["logits"], {k: batch[k].astype("int64") for k in ONNX_INPUTS})[0]
