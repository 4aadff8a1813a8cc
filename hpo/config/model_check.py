"""Finding the model a study fine-tunes and counting its blocks, through its task (a transformers encoder, an image
backbone), without loading weights or writing anything; :func:`ensure_model` builds a locally built model when a
study starts."""

from __future__ import annotations

from hpo.config.spec import ModelSpec
from hpo.errors import ConfigError
from trainers.pretrained import build_pretrained
from trainers.tasks import DEFAULT_TASK, SourceError, load_task


def resolve_model(raw: str, build_if_missing: str | None, task: str = DEFAULT_TASK) -> ModelSpec:
    """``model.name_or_path`` as its task finds it, with its number of blocks (``freeze_depth``'s range)."""
    try:
        found = load_task(task).resolve_model(raw, build_if_missing)
    except SourceError as err:
        raise ConfigError(err.key, err.message) from None
    return ModelSpec(found.name_or_path, found.blocks, build_if_missing, found.max_length)


def check_input_length(max_length: int, models: dict[str, ModelSpec]) -> None:
    """Refuses ``trainer.max_length`` beyond what a model's position embeddings take (an index error mid-trial)."""
    for key, model in models.items():
        if model.max_length is not None and max_length > model.max_length:
            raise ConfigError("trainer.max_length", f"{max_length} tokens is more than {key} "
                                                    f"({model.name_or_path}) takes: its position embeddings stop at "
                                                    f"{model.max_length}; set trainer.max_length={model.max_length} "
                                                    "or less")


def ensure_model(model: ModelSpec) -> None:
    """Builds the model folder a builder promised (the tiny test BERT, a truncated encoder), once."""
    build_pretrained(model.name_or_path, model.build_if_missing)
