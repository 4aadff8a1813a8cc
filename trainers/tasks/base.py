"""The contract between hpo and a fine-tuning task: what hpo may ask of any task, and nothing else.

hpo (the orchestrator) never reads a text, an image or a tokenizer: it hands a task the study's data settings
(:class:`DataSource`) and a model's folder, and gets back prepared data it passes to trials untouched, training
that reports through a :class:`~trainers.reporting.Reporter`, and saved models it can score, combine, predict
with and export. Importing this module imports no torch: hpo's config layer checks a study against a task's
:class:`TaskInfo` before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class SourceError(ValueError):
    """The data settings cannot work for this task: ``key`` is the config key to fix (``data.text_column``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True)
class TaskInfo:
    """What a study's config is checked against, known without importing the task's code."""

    name: str
    implementation: str  # "module:Class", imported by trainers.tasks.load_task
    metrics: tuple[str, ...]  # the validation metrics its trials report (study.metric must be one; empty: any)
    default_metric: str
    default_mode: str
    regression: bool = False  # float targets: no classes, class weights or stratified subsets
    user_function: bool = False  # trains the user's own code (task.fn): no data, model or search space of hpo's
    doc: str = ""


@dataclass(frozen=True)
class DataSource:
    """Which rows a study trains and validates on: the files, the task's own columns (``text``, ``text_pair``,
    ``label``: the config's ``data.<name>_column``), the limits and the seed that picks them."""

    train_path: Path
    validation_path: Path
    columns: Mapping[str, str | None] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # the task's own data.* settings (image_size)
    train_limit: int | None = None
    validation_limit: int | None = None
    seed: int = 0
    stratify: bool = False


@dataclass(frozen=True)
class ResolvedModel:
    """A pretrained model as a task found it: where it is, its blocks (``freeze_depth``'s range) and the longest input
    its position embeddings take (None: no such limit, as for an image backbone)."""

    name_or_path: str
    blocks: int
    max_length: int | None = None


class Predictor(Protocol):
    """A saved model that answers inputs (a list of rows) with a table: the label and a probability per class, or a
    predicted value."""

    def __call__(self, inputs: Sequence[Any]) -> Any: ...


class Task(Protocol):
    """One kind of fine-tuning. Each method is what one hpo feature needs; a task that cannot serve a feature raises
    ``NotImplementedError`` with a sentence saying so, which hpo shows as a refusal."""

    info: TaskInfo

    def resolve_model(self, name_or_path: str, build_if_missing: str | None) -> ResolvedModel:
        """The pretrained model, found without loading weights; :class:`SourceError` for ``model.*`` when it cannot
        be used."""

    def check_source(self, source: DataSource) -> None:
        """Cheap checks of the files and columns (headers only), raising :class:`SourceError`."""

    def prepare(self, source: DataSource, model: str, *, max_length: int, cache_dir: Path | None) -> Any:
        """The rows as the model reads them (tokenized, decoded...), read once per study and cached."""

    def fine_tune(self, cfg: Any, data: Any, reporter: Any) -> dict[str, float] | None:
        """Trains one configuration, reporting every epoch with a checkpoint folder."""

    def validation_outputs(self, folder: Path, data: Any, batch_size: int) -> tuple[Any, Any]:
        """(outputs, targets) of a saved model on the validation rows, aligned across models (ensembles)."""

    def training_outputs(self, folder: Path, data: Any, batch_size: int) -> Any:
        """A saved model's outputs on the training rows, in their order: a teacher's, to distil from."""

    def with_teacher(self, data: Any, outputs: Any) -> Any:
        """``data`` whose training rows carry a teacher's ``outputs``: fine-tuning on it distils."""

    def combine(self, outputs: Sequence[Any]) -> Any:
        """Several models' outputs as one model's (mean probabilities, or mean predictions)."""

    def metrics(self, outputs: Any, targets: Any) -> dict[str, float]:
        """Validation metrics of outputs, as trials report them."""

    def predictor(self, folder: Path) -> Predictor:
        """A saved model as something that predicts (``hpo predict``, the MLflow pyfunc)."""

    def sample_inputs(self, source: DataSource, rows: int) -> list[Any]:
        """The first validation inputs, as :meth:`predictor` takes them (to check an export against)."""

    def export_onnx(self, folder: Path, target: Path) -> Path:
        """The model as ONNX with dynamic axes."""

    def onnx_gap(self, folder: Path, onnx: Path, inputs: Sequence[Any]) -> float:
        """The largest absolute difference between the ONNX model's outputs and PyTorch's on ``inputs``."""

    def describe_model(self, folder: Path) -> dict[str, Any]:
        """Facts for a model card: labels (or the target), pooling, pipeline tag, how to load and call it."""
