"""The study's best model as an MLflow pyfunc: text in, label and class probabilities out.

A pyfunc (not the transformers flavor) because the head may read mean-pooled states, which
only :class:`trainers.TextClassifier` reproduces. Example::

    model = mlflow.pyfunc.load_model("models:/sst2_minilm/1")
    model.predict(["a gorgeous film", "a dull mess"])   # -> label, p_0, p_1
"""

from __future__ import annotations

import mlflow.pyfunc


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from transformers import AutoTokenizer

        from trainers import TextClassifier

        path = context.artifacts["checkpoint"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.classifier = TextClassifier.from_checkpoint(path).eval()

    def predict(self, context, model_input: list[str], params=None):
        """Texts in (a list, or a one-column DataFrame); a DataFrame of label and p_<label> out."""
        import pandas as pd
        import torch

        batch = self.tokenizer(list(model_input), padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(self.classifier(batch["input_ids"], batch["attention_mask"]), -1)
        id2label = self.classifier.config.id2label
        out = pd.DataFrame(probs.numpy(), columns=[f"p_{id2label[i]}" for i in range(probs.shape[1])])
        out.insert(0, "label", [id2label[i] for i in probs.argmax(-1).tolist()])
        return out
