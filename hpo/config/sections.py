"""The checks of config sections that stand alone (storage, data, cluster, confirmation, how the search goes), for
:func:`hpo.config.compose.build_spec`: each reads its keys, raises :class:`~hpo.errors.ConfigError` naming the key and
the fix, and returns its part of the :class:`~hpo.config.spec.StudySpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpo.config import spec as s
from hpo.errors import ConfigError
from hpo.model_uri import PREFIX as MODEL_URI_PREFIX
from hpo.model_uri import parse as parse_model_uri
from hpo.secrets import is_uri
from trainers.tasks import DataSource, SourceError, Task, TaskInfo

CHECKPOINT_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "file")  # what pyarrow.fs (Ray's storage) opens

_COLUMN = "_column"  # data.<role>_column: a column the task reads (text, text_pair, label)
# data.* settings every task shares; the rest (data.image_size) are the task's own.
_COMMON_DATA = {"dir", "train_path", "validation_path", "train_limit", "validation_limit", "seed", "stratify",
                "cv_folds"}
UNLABELED = "unlabeled_path"  # data.unlabeled_path: texts without labels, which the teacher labels (trainers.distill)
RANK_BY = ("mean", "lcb")  # confirm.rank_by: the mean, or the mean less one standard error (a lower confidence bound)
FEEDBACKS = ("pruned", "complete")  # search.feedback
FIRST_TRIALS = ("midpoint", "sampler", "portfolio")  # search.first_trial
MODEL_CHOICES = ("sampler", "ei_per_second")  # search.model_choice
SEARCH_SETTINGS = ("feedback", "first_trial", "model_choice", "portfolio_file")  # search/ keys that are no dimension


def as_dict(node: Any, key: str) -> dict[str, Any]:
    """A config section as a plain dict with its interpolations resolved; refused by ``key`` when it is no mapping."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
    if not isinstance(values, dict):
        raise ConfigError(key, f"must be a mapping, got {type(values).__name__}")
    return {str(k): v for k, v in values.items()}


def as_study_config(cfg: DictConfig | ListConfig) -> DictConfig:
    """A study's config: a mapping of sections (a YAML list in its place is refused)."""
    if not isinstance(cfg, DictConfig):
        raise ConfigError("config", "a study config is a mapping of sections (study, model, data, ...), got a list")
    return cfg


def get_key(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(key, f"{str(err).splitlines()[0]}; set it on the command line ({key}=...)") from None


def number(cfg: DictConfig, key: str, *, minimum: float, integer: bool = False, optional: bool = False):
    value = get_key(cfg, key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(key, f"must be {'an integer' if integer else 'a number'} >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value!r}")
    return int(value) if integer else value


def storage_spec(cfg: DictConfig, name: str) -> s.StorageSpec:
    if is_uri(str(get_key(cfg, "storage.root"))):
        raise ConfigError("storage.root", "must be a folder path; on a cluster, a shared filesystem mounted at the "
                                          "same path on every node (NFS, EFS, Filestore); for checkpoints in a "
                                          "bucket set storage.checkpoints=s3://bucket/prefix")
    root = Path(str(get_key(cfg, "storage.root"))).expanduser().resolve()
    if (keep := get_key(cfg, "storage.keep")) not in s.KEEPS:
        raise ConfigError("storage.keep", f"must be one of {list(s.KEEPS)}, got {keep!r}")
    return s.StorageSpec(
        keep=keep, max_gb=number(cfg, "storage.max_gb", minimum=0, optional=True),
        root=root, checkpoints=_checkpoints_location(cfg, root),
        optuna_url=get_key(cfg, "storage.optuna_url") or f"sqlite:///{root / name / 'optuna.db'}",
        registry_url=get_key(cfg, "registry.url") or f"sqlite:///{root / 'registry.db'}",
        tracking_uri=get_key(cfg, "tracking.uri") or f"sqlite:///{root / 'mlflow.db'}",
    )


def _checkpoints_location(cfg: DictConfig, root: Path) -> str:
    """``storage.checkpoints``: null means the storage root; a URI must be one pyarrow can open."""
    location = get_key(cfg, "storage.checkpoints")
    if location is None:
        return str(root)
    location = str(location)
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    scheme = location.split("://", 1)[0]
    if scheme not in CHECKPOINT_SCHEMES:
        schemes = [x + "://" for x in CHECKPOINT_SCHEMES]
        raise ConfigError("storage.checkpoints", f"{scheme}:// is not a filesystem Ray can write checkpoints to; "
                                                 f"use a shared folder or one of {schemes}")
    return location


def data_spec(cfg: DictConfig, task: Task) -> s.DataSpec:
    """The data settings, checked by the task that reads them (its columns, the files' headers)."""
    paths = {}
    for split in ("train_path", "validation_path"):
        key = f"data.{split}"
        path = Path(str(get_key(cfg, key))).expanduser().resolve()
        if not path.exists():
            hint = " (or set HPO_DATA_DIR to the SST-2 folder)" if "sst2" in str(path) else ""
            raise ConfigError(key, f"{path} does not exist; point it at the split's data{hint}")
        paths[split] = path
    data = get_key(cfg, "data")
    values = as_dict(data, "data")
    columns = {str(k)[: -len(_COLUMN)]: (None if v is None else str(v)) for k, v in values.items()
               if str(k).endswith(_COLUMN)}
    settings = {str(k): v for k, v in values.items() if str(k) not in _COMMON_DATA and not str(k).endswith(_COLUMN)}
    if settings.get(UNLABELED):  # rows a teacher labels: a path like the splits'
        path = Path(str(settings[UNLABELED])).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"data.{UNLABELED}", f"{path} does not exist; point it at a file of the texts to learn "
                                                   "from the teacher")
        if get_key(cfg, "distill.teacher") is None:
            raise ConfigError(f"data.{UNLABELED}", "rows without labels are learned from a teacher's outputs: set "
                                                   "distill.teacher=STUDY, or remove data.unlabeled_path")
        if OmegaConf.select(cfg, "data.cv_folds") is not None:
            raise ConfigError(f"data.{UNLABELED}", "cross-validation folds hold out labelled rows; unlabeled rows "
                                                   "need a validation split: remove data.cv_folds or the file")
        settings[UNLABELED] = str(path)
    try:
        task.check_source(DataSource(paths["train_path"], paths["validation_path"], columns, settings))
    except SourceError as err:
        raise ConfigError(err.key, err.message) from None
    return s.DataSpec(
        train_path=paths["train_path"], validation_path=paths["validation_path"], columns=columns, settings=settings,
        train_limit=number(cfg, "data.train_limit", minimum=2, integer=True, optional=True),
        validation_limit=number(cfg, "data.validation_limit", minimum=2, integer=True, optional=True),
        seed=number(cfg, "data.seed", minimum=0, integer=True, optional=True),
        stratify=bool(get_key(cfg, "data.stratify")),
        cv_folds=number(cfg, "data.cv_folds", minimum=2, integer=True, optional=True),
    )


def cluster_spec(cfg: DictConfig) -> s.ClusterSpec:
    address = get_key(cfg, "cluster.address")
    if isinstance(address, str) and address.startswith("ray://"):
        raise ConfigError("cluster.address", f"{address}: Ray Client would run the study's driver loop remotely "
                                             "and end it when your connection drops; submit the study with "
                                             "`hpo launch ... cluster=ray` (a Ray Job on the cluster) instead")
    return s.ClusterSpec(
        address=address,
        num_cpus=number(cfg, "cluster.num_cpus", minimum=1, integer=True, optional=True),
        num_gpus=number(cfg, "cluster.num_gpus", minimum=0, integer=True, optional=True),
        dashboard_url=get_key(cfg, "cluster.dashboard_url"),
        verbose=bool(get_key(cfg, "cluster.verbose")),
    )


def tracking_spec(cfg: DictConfig) -> s.TrackingSpec:
    retry_s = number(cfg, "tracking.retry_s", minimum=1)
    if retry_s > s.MAX_RETRY_S:
        raise ConfigError("tracking.retry_s", f"{retry_s} s is more than MLflow's client can retry ({s.MAX_RETRY_S} "
                                              f"s: 10 retries, at most 120 s apart); set it to {s.MAX_RETRY_S} or less")
    return s.TrackingSpec(retry_s=retry_s, system_metrics=bool(get_key(cfg, "tracking.system_metrics")))


def search_settings(cfg: DictConfig, task: TaskInfo) -> dict[str, Any]:
    """How the search goes rather than what it searches (``SEARCH_SETTINGS``), checked, as
    :class:`~hpo.config.spec.StudySettings` fields."""
    feedback = get_key(cfg, "search.feedback")
    if feedback not in FEEDBACKS:
        raise ConfigError("search.feedback", f"must be one of {list(FEEDBACKS)}, got {feedback!r}")
    first_trial = get_key(cfg, "search.first_trial")
    if first_trial not in FIRST_TRIALS:
        raise ConfigError("search.first_trial", f"must be one of {list(FIRST_TRIALS)}, got {first_trial!r}")
    model_choice = str(OmegaConf.select(cfg, "search.model_choice", default="sampler"))
    if model_choice not in MODEL_CHOICES:
        raise ConfigError("search.model_choice", f"must be one of {list(MODEL_CHOICES)}, got {model_choice!r}")
    if model_choice != "sampler" and OmegaConf.select(cfg, "search.model") is None:
        raise ConfigError("search.model_choice", f"{model_choice} chooses among searched models; search one with "
                                                 "search=models (or search.model={choices: [...]}), or drop it")
    if first_trial == "portfolio" and task.user_function:
        raise ConfigError("search.first_trial", "the portfolio holds fine-tuning configs of the text and image tasks; "
                                                "task=custom searches its own space: use midpoint or sampler")
    portfolio_file = OmegaConf.select(cfg, "search.portfolio_file")  # read by hpo.study.portfolio, if it is used
    return {"feedback": feedback, "first_trial": first_trial, "model_choice": model_choice,
            "portfolio_file": None if portfolio_file is None else Path(str(portfolio_file)).expanduser().resolve()}


def confirm_spec(cfg: DictConfig) -> s.ConfirmSpec:
    rank_by = get_key(cfg, "confirm.rank_by")
    if rank_by not in RANK_BY:
        raise ConfigError("confirm.rank_by", f"must be one of {list(RANK_BY)}, got {rank_by!r}")
    return s.ConfirmSpec(top_k=number(cfg, "confirm.top_k", minimum=0, integer=True),
                         seeds=number(cfg, "confirm.seeds", minimum=1, integer=True), rank_by=rank_by)


DISTILL_SETTINGS = ("distill_temperature", "distill_alpha")  # search dimensions that need a teacher
DISTILLED, PLAIN = "distilled", "plain"  # the kinds of student study `hpo distill` runs


def distill_name(teacher_study: str, student: str, kind: str = DISTILLED) -> str:
    """A student study's default name: ``<teacher study>-distilled-<student>`` (a path's last part); ``kind``
    ``plain``: the same student trained without the teacher, for the comparison."""
    return f"{teacher_study}-{kind}-{Path(student.rstrip('/')).name}"


def plain_name(distilled_study: str) -> str:
    """The plain student study that goes with a distilled one named by :func:`distill_name`."""
    return distilled_study.replace(f"-{DISTILLED}-", f"-{PLAIN}-", 1)


def distill_spec(cfg: DictConfig, task: TaskInfo, searched: set[str]) -> s.DistillSpec:
    """``distill.teacher`` as a model URI: a study's name means its champion. ``searched``: the space's names."""
    teacher = OmegaConf.select(cfg, "distill.teacher")
    if teacher is None:
        if needing := sorted(searched & set(DISTILL_SETTINGS)):
            raise ConfigError(f"search.{needing[0]}", "distils from a teacher: set distill.teacher=STUDY (or "
                                                      f"models:/NAME@ALIAS), or remove it (~search.{needing[0]})")
        return s.DistillSpec()
    if not isinstance(teacher, str) or not teacher.strip():
        raise ConfigError("distill.teacher", f"must name a registered model (models:/NAME@champion) or a study, got "
                                             f"{teacher!r}")
    if task.user_function:
        raise ConfigError("distill.teacher", "task=custom trains your own code; distil inside it, or use a task hpo "
                                             "fine-tunes (text_classification, image_classification...)")
    uri = parse_model_uri(teacher if teacher.startswith(MODEL_URI_PREFIX) else f"{MODEL_URI_PREFIX}{teacher}@champion")
    if uri is None:
        raise ConfigError("distill.teacher", f"{teacher!r}: write models:/NAME@ALIAS or models:/NAME/VERSION")
    return s.DistillSpec(teacher=str(uri))


def resources_spec(cfg: DictConfig, data: s.DataSpec | None) -> s.ResourcesSpec:
    """A trial's resources; with ``workers_per_trial`` > 1, each worker's, refused where a group cannot run yet.
    ``resources.gpu=K`` (K > 1) alone is a group of K one-GPU workers: one process per GPU (DDP), which PyTorch
    recommends over one process driving K GPUs (DataParallel)."""
    cpu = number(cfg, "resources.cpu", minimum=0.01)
    gpu = number(cfg, "resources.gpu", minimum=0)
    if gpu > 1 and int(gpu) != gpu:
        raise ConfigError("resources.gpu", f"{gpu} GPUs per trial: above 1 it must be a whole number (Ray's rule); "
                                           "use a fraction below 1 to pack trials onto one GPU")
    key = "resources.workers_per_trial"
    workers = number(cfg, key, minimum=1, integer=True)
    if gpu > 1 and workers == 1:
        workers, gpu = int(gpu), 1
    if workers > 1:
        if gpu not in (0, 1):
            raise ConfigError(key, f"each worker of a DDP group drives one whole GPU: set resources.gpu=1 (or 0 for "
                                   f"CPU workers), not {gpu:g}")
        if data is not None and data.cv_folds:
            raise ConfigError(key, "cross-validation (data.cv_folds) runs its folds in one process; use "
                                   "workers_per_trial=1 (and resources.gpu <= 1) or a validation split")
    return s.ResourcesSpec(cpu=cpu, gpu=gpu, reuse_workers=bool(get_key(cfg, "resources.reuse_workers")),
                           max_retries=number(cfg, "resources.max_retries", minimum=0, integer=True),
                           workers_per_trial=workers)
