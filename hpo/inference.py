"""The MLflow pyfunc classes every registered model of a study is (the search's best, a refit, an ensemble): a saved
model folder that predicts through its task's predictor (:meth:`trainers.tasks.base.Task.predictor`), so hpo never
reads a text or an image itself. Shared by the stores (which log these classes) and the model commands.

A pyfunc (not the transformers flavor) because the head may read mean-pooled states, which only the task's own
model class reproduces. Example::

    model = mlflow.pyfunc.load_model("models:/sst2_minilm@champion")
    model.predict(["a gorgeous film", "a dull mess"])   # -> label, p_0, p_1 (text_regression: score)
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from mlflow.pyfunc import PythonModel

from trainers.tasks import DEFAULT_TASK, load_task


def combine_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several models' prediction tables as one: probabilities (``p_*``) or scores averaged, the label re-chosen.

    >>> a = pd.DataFrame({"label": ["neg"], "p_neg": [0.9], "p_pos": [0.1]})
    >>> b = pd.DataFrame({"label": ["pos"], "p_neg": [0.3], "p_pos": [0.7]})
    >>> combine_frames([a, b]).round(2).to_dict("records")
    [{'label': 'neg', 'p_neg': 0.6, 'p_pos': 0.4}]
    """
    numeric = [c for c in frames[0].columns if c != "label"]
    mean = sum(f[numeric] for f in frames) / len(frames)
    if "label" in frames[0].columns:
        mean.insert(0, "label", mean.idxmax(axis=1).str.removeprefix("p_"))
    return mean


class FineTunedModel(PythonModel):
    """One fine-tuned model (artifact ``checkpoint``) of task ``task``."""

    # MLflow's own switch (private) for what its ChatModel does: no type-hint schema around predict. A task's rows
    # are texts, pairs or image paths, which a schema would coerce (a DataFrame into dicts); without it MLflow warns
    # on every definition and load that predict has no type hints.
    _skip_type_hint_validation = True

    def __init__(self, task: str = DEFAULT_TASK) -> None:
        self.task = task

    def load_context(self, context) -> None:
        self.predictor = load_task(self.task).predictor(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        """Rows in (a list, or a DataFrame); a DataFrame of label and p_<label> (or score) out."""
        return self.predictor(model_input)


class EnsembleModel(PythonModel):
    """Several models of one task (artifacts ``member_0``, ``member_1``, ...) whose predictions are averaged
    (``hpo ensemble``); the same input and output as :class:`FineTunedModel`."""

    _skip_type_hint_validation = True  # as FineTunedModel's

    def __init__(self, task: str = DEFAULT_TASK) -> None:
        self.task = task

    def load_context(self, context) -> None:
        names = sorted(context.artifacts, key=lambda k: int(k.rsplit("_", 1)[-1]))
        task = load_task(self.task)
        self.members = [task.predictor(context.artifacts[name]) for name in names]

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        return combine_frames([member(model_input) for member in self.members])
