"""The model card written beside an exported model (``README.md``, Hugging Face's format: YAML metadata,
then what the model is, how it was chosen, how to load it, its hyperparameters, metrics and data). What the model
is and how to call it come from its task (:meth:`trainers.tasks.base.Task.describe_model`).

Example::

    >>> card = model_card(ModelFacts(study="sst2", trial=3, base_model="minilm", task="text_classification",
    ...     model={"kind": "text classification", "pipeline_tag": "text-classification", "pooling": "mean",
    ...            "labels": ["neg", "pos"], "usage": ["predict(['a gorgeous film'])"]},
    ...     params={"learning_rate": 3e-05}, metrics={"val_accuracy": 0.85},
    ...     metric="val_accuracy", best_epoch=2, data={"train": "train.csv"}))
    >>> card.splitlines()[0], "| learning_rate | 3e-05 |" in card, "| val_accuracy | 0.8500 |" in card
    ('---', True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    study: str
    trial: int | None
    base_model: str
    task: str
    model: dict[str, Any]  # the task's description: kind, pipeline_tag, pooling, labels, usage, onnx_inputs
    params: dict[str, Any]
    metrics: dict[str, float]  # validation metrics at the best epoch
    metric: str  # the study's objective
    best_epoch: int | None
    data: dict[str, Any] = field(default_factory=dict)  # paths, limits, rows


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def model_card(f: ModelFacts) -> str:
    m = f.model
    labels = m.get("labels") or []
    what = (f"({len(labels)} labels: " + ", ".join(f"`{x}`" for x in labels) + ")") if labels else "(one output)"
    pooling_note = ("It reads the **mean of the last hidden states** (`hpo_pooling: mean` in `config.json`): load "
                    "it with its task's predictor (below), or use `model.onnx`; a plain Auto class would read the "
                    "CLS token instead." if m.get("pooling") == "mean" else "")
    tag = m.get("pipeline_tag", "other")
    lines = [
        "---", f"pipeline_tag: {tag}", f"base_model: {f.base_model}",
        f"tags: [hpo, {f.task}]", "model-index:", f"- name: {f.study}", "  results:",
        f"  - task: {{type: {tag}}}", "    metrics:",
        *(f"    - {{type: {k}, value: {v:.4f}}}" for k, v in sorted(f.metrics.items())), "---", "",
        f"# {f.study}", "",
        f"`{f.base_model}` fine-tuned for {m.get('kind', f.task)} {what}. Chosen by the hpo study `{f.study}` as "
        "its best trial" + (f" (trial {f.trial}, best epoch {f.best_epoch})" if f.trial is not None else "")
        + f" by `{f.metric}`.", "", pooling_note, "",
        "## Use", "", "```python", *m.get("usage", []), "```", "",
        f"or `hpo predict {f.study} ...`"
        + (f"; with `model.onnx` (onnxruntime) the inputs are {', '.join(f'`{x}`' for x in m['onnx_inputs'])}."
           if m.get("onnx_inputs") else "."), "",
        "## Validation metrics (best epoch)", "", "| metric | value |", "|---|---|",
        *(f"| {k} | {v:.4f} |" for k, v in sorted(f.metrics.items())), "",
        "## Hyperparameters", "", "| param | value |", "|---|---|",
        *(f"| {k} | {_value(v)} |" for k, v in sorted(f.params.items())), "",
        "## Data", "", *(f"- {k}: `{v}`" for k, v in f.data.items()), "",
        "Variance across seeds is a few points for fine-tuning runs of this size (Dodge et al. 2020): the best "
        "trial of a search is an optimistic estimate of what the config gives on a new seed.", "",
    ]
    return "\n".join(lines)
