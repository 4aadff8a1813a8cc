"""A fine-tuned classifier as something that predicts: load a saved folder, tokenize, average several models'
probabilities, and the MLflow pyfunc classes every registered model of a study is (the search's best, a refit, an
ensemble). Shared by the stores (which log these classes) and the model commands (which load and export them).

A pyfunc (not the transformers flavor) because the head may read mean-pooled states, which only
:class:`trainers.TextClassifier` reproduces. Example::

    model = mlflow.pyfunc.load_model("models:/sst2_minilm@champion")
    model.predict(["a gorgeous film", "a dull mess"])   # -> label, p_0, p_1
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from trainers import load_model


def average_probabilities(probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of several models' class probabilities (rows aligned): an ensemble's probabilities.

    >>> average_probabilities([torch.tensor([[0.9, 0.1]]), torch.tensor([[0.3, 0.7]])]).tolist()
    [[0.6000000238418579, 0.4000000059604645]]
    """
    return torch.stack(list(probabilities)).mean(0)


def load(path: str | Path):
    """(tokenizer, classifier in eval mode) of a folder written by ``TextClassifier.save``."""
    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in a command's output
    return AutoTokenizer.from_pretrained(str(path)), load_model(path).eval()


def logits(tokenizer, classifier, texts: list[str], max_length: int = 512):
    """The classifier's logits (a torch tensor, rows = texts)."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return classifier(batch["input_ids"], batch["attention_mask"])


def probabilities(tokenizer, classifier, texts: list[str], max_length: int = 512):
    """Class probabilities (a torch tensor, rows = texts)."""
    return logits(tokenizer, classifier, texts, max_length).softmax(-1)


def predictions_frame(probs, id2label: dict[int, str]):
    """A DataFrame of label and p_<label> per text."""
    out = pd.DataFrame(probs.numpy(), columns=[f"p_{id2label[i]}" for i in range(probs.shape[1])])
    out.insert(0, "label", [id2label[i] for i in probs.argmax(-1).tolist()])
    return out


class TextClassifierModel(PythonModel):
    def load_context(self, context) -> None:
        self.tokenizer, self.classifier = load(context.artifacts["checkpoint"])

    def predict(self, context, model_input: list[str], params=None):
        """Texts in (a list, or a one-column DataFrame); a DataFrame of label and p_<label> out."""
        texts = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        probs = probabilities(self.tokenizer, self.classifier, texts)
        return predictions_frame(probs, self.classifier.config.id2label)


class EnsembleModel(PythonModel):
    """Several classifiers (artifacts ``member_0``, ``member_1``, ...) whose probabilities are averaged
    (``hpo ensemble``); the same input and output as :class:`TextClassifierModel`."""

    def load_context(self, context) -> None:
        names = sorted(context.artifacts, key=lambda k: int(k.rsplit("_", 1)[-1]))
        self.members = [load(context.artifacts[name]) for name in names]

    def predict(self, context, model_input: list[str], params=None):
        texts = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        probs = average_probabilities([probabilities(tokenizer, classifier, texts)
                                       for tokenizer, classifier in self.members])
        return predictions_frame(probs, self.members[0][1].config.id2label)
