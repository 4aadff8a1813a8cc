"""Turning the composed Hydra config into a validated :class:`StudySpec`, before anything runs.

Every check raises :class:`~hpo.errors.ConfigError` naming the key and the fix, so a typo costs
a second, not a cluster start. Example::

    cfg = compose(["experiment=sst2_minilm", "study.num_samples=2"])
    spec = build_spec(cfg)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpo.checkpoints import is_uri
from hpo.errors import ConfigError
from hpo.resolvers import CONFIG_DIR, register
from hpo.search_space import SearchSpace
from trainers.config import TrainConfig
from trainers.loop import VALIDATION_METRICS
from trainers.modeling import POOLINGS, UnsupportedArchitecture, num_encoder_blocks

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TRAINER_KEYS = ("max_epochs", "max_length", "eval_batch_size", "grad_clip", "early_stopping_patience",
                 "min_micro_batch_size")


@dataclass(frozen=True)
class DataSpec:
    train_path: Path
    validation_path: Path
    text_column: str
    label_column: str
    train_limit: int | None
    validation_limit: int | None


@dataclass(frozen=True)
class StudySpec:
    """Everything a study run needs, checked."""

    name: str
    metric: str
    mode: str
    num_samples: int
    max_concurrent: int | None  # None: as many trials as the cluster holds at once
    time_budget_s: float | None
    seed: int
    storage_root: Path
    checkpoints: str  # a folder every node mounts, or an object-store URI (hpo.checkpoints)
    tracking_uri: str
    register_best: bool
    model_path: str
    num_layers: int
    data: DataSpec
    space: SearchSpace
    trainer: dict[str, Any]  # the fixed TrainConfig fields every trial shares
    cpu: float
    gpu: float
    reuse_workers: bool
    sampler: Any
    scheduler: Any
    ray_address: str | None
    ray_num_cpus: int | None
    ray_num_gpus: int | None
    dashboard_url: str | None
    ray_verbose: bool
    config_yaml: str
    registry_url: str
    optuna_storage_url: str | None
    heartbeat_s: float
    stale_after_s: float
    stop_target: float | None
    stop_patience: int | None
    stop_min_delta: float
    warm_start_from: str | None
    warm_start_top_k: int

    @property
    def study_dir(self) -> Path:
        return self.storage_root / self.name

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage_url or f"sqlite:///{self.study_dir / 'optuna.db'}"

    @property
    def cache_dir(self) -> Path:
        return self.storage_root / "cache"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config, as ``hpo sweep OVERRIDES`` would see it (for tests and notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(key, f"{str(err).splitlines()[0]}; set it on the command line ({key}=...)") from None
    return value


def _number(cfg: DictConfig, key: str, *, minimum: float, integer: bool = False, optional: bool = False):
    value = _get(cfg, key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(key, f"must be {'an integer' if integer else 'a number'} >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value!r}")
    return int(value) if integer else value


def build_spec(cfg: DictConfig) -> StudySpec:
    """Validates ``cfg`` in the order a user would fix it: study, resources, model, data, search."""
    try:
        config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        raise ConfigError(str(key), str(err).splitlines()[0]) from None

    name = str(_get(cfg, "study.name"))
    if not _STUDY_NAME.match(name):
        raise ConfigError("study.name", f"{name!r} must be letters, digits, '_', '.' or '-' (used in paths and MLflow)")
    metric, mode = _get(cfg, "study.metric"), _get(cfg, "study.mode")
    if metric not in VALIDATION_METRICS:
        raise ConfigError("study.metric", f"{metric!r} is not reported; choose one of {list(VALIDATION_METRICS)}")
    if mode not in ("min", "max"):
        raise ConfigError("study.mode", f"must be 'min' or 'max', got {mode!r}")
    if (metric == "val_loss") != (mode == "min"):
        raise ConfigError("study.mode", f"{metric} should be {'minimized' if metric == 'val_loss' else 'maximized'}")

    if is_uri(str(_get(cfg, "storage.root"))):
        raise ConfigError("storage.root", "must be a folder path; on a cluster, a shared filesystem mounted at the "
                                          "same path on every node (NFS, EFS, Filestore); for checkpoints in a "
                                          "bucket set storage.checkpoints=s3://bucket/prefix")
    storage_root = Path(str(_get(cfg, "storage.root"))).expanduser().resolve()
    checkpoints = _checkpoints_location(cfg, storage_root)
    tracking_uri = _get(cfg, "tracking.uri") or f"sqlite:///{storage_root / 'mlflow.db'}"

    model_path, num_layers = _resolve_model(cfg)
    pooling = _get(cfg, "model.pooling")
    if pooling not in POOLINGS:
        raise ConfigError("model.pooling", f"must be one of {list(POOLINGS)}, got {pooling!r}")

    data = _data_spec(cfg)
    search = _get(cfg, "search")
    if not isinstance(search, DictConfig):
        raise ConfigError("search", "must be a mapping of hyperparameter -> range, choices or value")
    space = SearchSpace.from_config(OmegaConf.to_container(search, resolve=True), num_layers)

    trainer = {key: _get(cfg, f"trainer.{key}") for key in _TRAINER_KEYS}
    _number(cfg, "trainer.max_epochs", minimum=1, integer=True)
    _number(cfg, "trainer.max_length", minimum=8, integer=True)
    _number(cfg, "trainer.eval_batch_size", minimum=1, integer=True)
    _number(cfg, "trainer.min_micro_batch_size", minimum=1, integer=True)
    _number(cfg, "trainer.early_stopping_patience", minimum=1, integer=True, optional=True)
    trainer.update(model_name_or_path=model_path, pooling=pooling, metric=metric, mode=mode,
                   seed=_number(cfg, "study.seed", minimum=0, integer=True))
    try:
        TrainConfig.from_mapping({**trainer, **space.fixed})
    except (TypeError, ValueError) as err:
        raise ConfigError("trainer", str(err)) from None

    warm_start_from = _get(cfg, "warm_start.from")
    if warm_start_from is not None and warm_start_from == name:
        raise ConfigError("warm_start.from", "a study cannot warm-start from itself; name another study")
    cpu = _number(cfg, "resources.cpu", minimum=0.01)
    gpu = _number(cfg, "resources.gpu", minimum=0)
    if gpu > 1 and int(gpu) != gpu:
        raise ConfigError("resources.gpu", f"{gpu} GPUs per trial: above 1 it must be a whole number (Ray's rule); "
                                           "use a fraction below 1 to pack trials onto one GPU")
    ray_address = _get(cfg, "cluster.address")
    if isinstance(ray_address, str) and ray_address.startswith("ray://"):
        raise ConfigError("cluster.address", f"{ray_address}: Ray Client would run the study's driver loop remotely "
                                             "and end it when your connection drops; submit the study with "
                                             "`hpo launch ... cluster=ray` (a Ray Job on the cluster) instead")
    sampler = _instantiate(cfg, "sampler", space)
    scheduler = _instantiate(cfg, "scheduler", space)
    return StudySpec(
        name=name, metric=metric, mode=mode,
        num_samples=_number(cfg, "study.num_samples", minimum=1, integer=True),
        max_concurrent=_number(cfg, "study.max_concurrent", minimum=1, integer=True, optional=True),
        time_budget_s=_number(cfg, "study.time_budget_s", minimum=1, optional=True),
        seed=trainer["seed"], storage_root=storage_root, checkpoints=checkpoints, tracking_uri=tracking_uri,
        register_best=bool(_get(cfg, "tracking.register_best")),
        model_path=model_path, num_layers=num_layers, data=data, space=space, trainer=trainer,
        cpu=cpu, gpu=gpu, reuse_workers=bool(_get(cfg, "resources.reuse_workers")),
        sampler=sampler, scheduler=scheduler,
        ray_address=ray_address,
        ray_num_cpus=_number(cfg, "cluster.num_cpus", minimum=1, integer=True, optional=True),
        ray_num_gpus=_number(cfg, "cluster.num_gpus", minimum=0, integer=True, optional=True),
        dashboard_url=_get(cfg, "cluster.dashboard_url"),
        ray_verbose=bool(_get(cfg, "cluster.verbose")),
        config_yaml=config_yaml,
        registry_url=_get(cfg, "registry.url") or f"sqlite:///{storage_root / 'registry.db'}",
        optuna_storage_url=_get(cfg, "storage.optuna_url"),
        heartbeat_s=_number(cfg, "registry.heartbeat_s", minimum=0.1),
        stale_after_s=_number(cfg, "registry.stale_after_s", minimum=1),
        stop_target=_number(cfg, "study.stop.target", minimum=-1e30, optional=True),
        stop_patience=_number(cfg, "study.stop.patience", minimum=1, integer=True, optional=True),
        stop_min_delta=_number(cfg, "study.stop.min_delta", minimum=0),
        warm_start_from=warm_start_from,
        warm_start_top_k=_number(cfg, "warm_start.top_k", minimum=1, integer=True),
    )


def _resolve_model(cfg: DictConfig) -> tuple[str, int]:
    """Finds the model (building the tiny test model if asked) and counts its encoder blocks."""
    raw = str(_get(cfg, "model.name_or_path"))
    builder = OmegaConf.select(cfg, "model.build_if_missing")
    if builder == "tiny_bert":
        from trainers.tiny import build_tiny_bert

        build_tiny_bert(Path(raw).expanduser().resolve())
    elif builder is not None:
        raise ConfigError("model.build_if_missing", f"unknown builder {builder!r}; the only one is 'tiny_bert'")

    local = Path(raw).expanduser()
    looks_local = local.exists() or raw.startswith(("/", ".", "~")) or raw.count("/") > 1
    if looks_local and not (local / "config.json").is_file():
        raise ConfigError(
            "model.name_or_path",
            f"{raw!r} is not a model folder (no config.json there); give a folder written by "
            "save_pretrained, or a hub name such as 'bert-base-uncased'",
        )
    name_or_path = str(local.resolve()) if looks_local else raw
    try:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = AutoConfig.from_pretrained(name_or_path)
        with torch.device("meta"):  # the architecture, without allocating weights
            model = AutoModelForSequenceClassification.from_config(config)
        return name_or_path, num_encoder_blocks(model)
    except UnsupportedArchitecture as err:
        raise ConfigError("model.name_or_path", str(err)) from None
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError("model.name_or_path", f"cannot load {raw!r}: {str(err).splitlines()[0]}") from None


def _data_spec(cfg: DictConfig) -> DataSpec:
    from trainers.data import DataError, read_header

    paths = {}
    for split in ("train_path", "validation_path"):
        key = f"data.{split}"
        path = Path(str(_get(cfg, key))).expanduser().resolve()
        if not path.is_file():
            hint = " (or set HPO_DATA_DIR to the SST-2 folder)" if "sst2" in str(path) else ""
            raise ConfigError(key, f"{path} does not exist; point it at a CSV file{hint}")
        paths[split] = path
    text_column, label_column = _get(cfg, "data.text_column"), _get(cfg, "data.label_column")
    for split, path in paths.items():
        try:
            columns = read_header(path)
        except DataError as err:
            raise ConfigError(f"data.{split}", str(err)) from None
        for key, column in (("data.text_column", text_column), ("data.label_column", label_column)):
            if column not in columns:
                raise ConfigError(key, f"{path.name} has no column {column!r}; its columns are {columns}")
    return DataSpec(
        train_path=paths["train_path"], validation_path=paths["validation_path"],
        text_column=text_column, label_column=label_column,
        train_limit=_number(cfg, "data.train_limit", minimum=2, integer=True, optional=True),
        validation_limit=_number(cfg, "data.validation_limit", minimum=2, integer=True, optional=True),
    )


def _instantiate(cfg: DictConfig, group: str, space: SearchSpace) -> Any:
    """Builds the sampler or scheduler now, so a bad ``_target_`` or argument fails before Ray starts."""
    from hydra.utils import instantiate

    node = _get(cfg, group)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(group, f"needs a `_target_`; pick one of the {group}/ configs, e.g. {group}=tpe")
    kwargs = {}
    if group == "sampler" and "search_space" in node:
        kwargs["search_space"] = space.grid_space()
    try:
        return instantiate(node, **kwargs)
    except Exception as err:  # noqa: BLE001 (hydra wraps import and argument errors alike)
        message = str(err).splitlines()[0]
        raise ConfigError(group, f"cannot build {node['_target_']}: {message}") from None


CHECKPOINT_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "file")  # what pyarrow.fs (Ray's storage) opens


def _checkpoints_location(cfg: DictConfig, storage_root: Path) -> str:
    """``storage.checkpoints``: null means the storage root; a URI must be one pyarrow can open."""
    location = _get(cfg, "storage.checkpoints")
    if location is None:
        return str(storage_root)
    location = str(location)
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    scheme = location.split("://", 1)[0]
    if scheme not in CHECKPOINT_SCHEMES:
        schemes = [s + "://" for s in CHECKPOINT_SCHEMES]
        raise ConfigError("storage.checkpoints", f"{scheme}:// is not a filesystem Ray can write checkpoints to; "
                                                 f"use a shared folder or one of {schemes}")
    return location
