"""Finding the pretrained transformers model a text study fine-tunes and counting its encoder blocks, without loading
weights or writing anything (a model built locally is described, not built: :func:`build_pretrained` builds it when a
study starts)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from trainers.modeling import UnsupportedArchitecture, blocks_of_pretrained, max_input_length
from trainers.split_package import SPLIT_MODELS, build_split, split_config
from trainers.tasks.base import ResolvedModel, SourceError
from trainers.tiny import build_tiny_bert, tiny_bert_config
from trainers.truncated import TRUNCATIONS, build_truncated, truncated_config

BUILDERS = ("tiny_bert", *TRUNCATIONS, *SPLIT_MODELS)  # models hpo writes to a folder itself on first use


def resolve_pretrained(raw: str, build_if_missing: str | None) -> ResolvedModel:
    """``model.name_or_path`` as a local folder (absolute) or a hub name, with its number of encoder blocks and the
    longest input its position embeddings take."""
    if build_if_missing is not None and build_if_missing not in BUILDERS:
        raise SourceError("model.build_if_missing",
                          f"unknown builder {build_if_missing!r}; the builders are {list(BUILDERS)}")
    local = Path(raw).expanduser()
    to_build = build_if_missing is not None and not (local / "config.json").is_file()
    looks_local = local.exists() or raw.startswith(("/", ".", "~")) or raw.count("/") > 1
    if looks_local and not to_build and not (local / "config.json").is_file():
        raise SourceError(
            "model.name_or_path",
            f"{raw!r} is not a model folder (no config.json there); give a folder written by "
            "save_pretrained, or a hub name such as 'bert-base-uncased'",
        )
    name_or_path = str(local.resolve()) if looks_local or to_build else raw
    try:
        config = (_described(build_if_missing) if build_if_missing and to_build
                  else AutoConfig.from_pretrained(name_or_path))
        return ResolvedModel(name_or_path, blocks_of_pretrained(config), max_input_length(config))
    except UnsupportedArchitecture as err:
        raise SourceError("model.name_or_path", str(err)) from None
    except (OSError, ValueError, KeyError) as err:
        raise SourceError("model.name_or_path", f"cannot load {raw!r}: {str(err).splitlines()[0]}") from None


def _described(builder: str):
    """The config of the model ``builder`` will write, read without writing it."""
    if builder in TRUNCATIONS:
        return truncated_config(builder)
    if builder in SPLIT_MODELS:
        return split_config(builder)

    return tiny_bert_config()


def build_pretrained(name_or_path: str, build_if_missing: str | None) -> None:
    """Builds the model folder a builder promised (the tiny test BERT, a truncated encoder), once."""
    if build_if_missing == "tiny_bert":
        build_tiny_bert(name_or_path)
    elif build_if_missing in TRUNCATIONS:
        build_truncated(build_if_missing, name_or_path)
    elif build_if_missing in SPLIT_MODELS:
        build_split(build_if_missing, name_or_path)
