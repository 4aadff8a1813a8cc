"""A study's settings once checked: nested, typed and inert (no live sampler, scheduler or Ray object).

:func:`hpo.config.compose.build_spec` builds it from the composed Hydra config; every part below is what one
consumer needs, so a module takes the part it uses (``spec.storage``, ``spec.trainer``) rather than the
whole clump. The sampler and scheduler are kept as recipes (:class:`Component`) and built where used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from hpo.config.search_space import SearchSpace
from trainers import TrainConfig
from trainers.objective import Objective
from trainers.tasks import DataSource


@dataclass(frozen=True)
class Component:
    """A Hydra ``_target_`` and its arguments: a sampler or scheduler, built fresh by :meth:`build`.

    >>> sampler = Component("optuna.samplers.TPESampler", {"seed": 0, "multivariate": True})
    >>> sampler.name, type(sampler.build()).__name__, sampler.build() is sampler.build()
    ('TPESampler', 'TPESampler', False)
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.target.rsplit(".", 1)[-1]

    def build(self, **extra: Any) -> Any:
        return instantiate({"_target_": self.target, **self.kwargs, **extra})


@dataclass(frozen=True)
class StopRules:
    """Study-level early stopping (any rule that is set can end the study)."""

    time_budget_s: float | None = None
    epoch_budget: int | None = None
    target: float | None = None
    patience: int | None = None
    min_delta: float = 0.0


@dataclass(frozen=True)
class StudySettings:
    name: str
    objective: Objective
    num_samples: int
    max_concurrent: int | None  # None: as many trials as the cluster holds at once
    seed: int
    stop: StopRules
    feedback: str  # what Optuna is told of a scheduler-stopped trial: "pruned" | "complete"
    first_trial: str  # "midpoint": the space's centre first | "sampler": the sampler's own first draw | "portfolio"
    extra_objectives: tuple[Objective, ...] = ()  # study.objectives after the first: a multi-objective study
    model_choice: str = "sampler"  # how a study that searches the model picks it: "sampler" | "ei_per_second"
    portfolio_file: Path | None = None  # first_trial=portfolio from this file (hpo.study.portfolio); None: the shipped

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """Every objective, the primary (what ASHA schedules on and the best trial is ranked by) first."""
        return (self.objective, *self.extra_objectives)


KEEPS = ("best", "all")  # storage.keep


@dataclass(frozen=True)
class StorageSpec:
    root: Path
    checkpoints: str  # a folder every node mounts, or an object-store URI (hpo.stores.checkpoints)
    optuna_url: str
    registry_url: str
    tracking_uri: str
    keep: str = "best"  # one of KEEPS (hpo.stores.retention)
    max_gb: float | None = None  # study-wide cap on checkpoint storage

    def study_dir(self, name: str) -> Path:
        return self.root / name

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"


@dataclass(frozen=True)
class ModelSpec:
    name_or_path: str
    num_layers: int
    build_if_missing: str | None  # "tiny_bert": built on disk when the study starts, not when checked
    max_length: int | None = None  # the longest input its position embeddings take (None: no such limit)


@dataclass(frozen=True)
class ModelChoice:
    """One pretrained model a study may pick (``search.model``, :mod:`hpo.config.model_choice`), with its own search
    ranges (``prior``)."""

    model: ModelSpec
    pooling: str
    prior: dict[str, Any]


@dataclass(frozen=True)
class DataSpec:
    """The study's data settings; ``columns`` are the task's (``data.<role>_column``: text, text_pair, label), read by
    the task, never by hpo."""

    train_path: Path
    validation_path: Path
    columns: dict[str, str | None]
    train_limit: int | None
    validation_limit: int | None
    seed: int | None  # of the subsets the limits pick; None (a study recorded before data.seed): study.seed
    stratify: bool = False  # the limits keep each label's share (False for studies recorded before data.stratify)
    cv_folds: int | None = None  # k-fold cross-validation as the objective (trainers.cv)
    settings: dict[str, Any] = field(default_factory=dict)  # the task's own data.* settings (data.image_size)

    def source(self, study_seed: int) -> DataSource:
        """What the task reads: these settings, the limits' seed defaulting to the study's."""
        return DataSource(self.train_path, self.validation_path, self.columns, self.settings,
                          train_limit=self.train_limit, validation_limit=self.validation_limit,
                          seed=study_seed if self.seed is None else self.seed, stratify=self.stratify)


@dataclass(frozen=True)
class ResourcesSpec:
    """Per trial, or per worker of a trial that runs as a DDP group of ``workers_per_trial`` (> 1)."""

    cpu: float
    gpu: float
    reuse_workers: bool
    max_retries: int = 2  # restarts of a trial whose worker died, each from its latest checkpoint
    workers_per_trial: int = 1


@dataclass(frozen=True)
class ClusterSpec:
    address: str | None  # None: a fresh local Ray
    num_cpus: int | None
    num_gpus: int | None
    dashboard_url: str | None
    verbose: bool


@dataclass(frozen=True)
class LeaseSpec:
    heartbeat_s: float
    stale_after_s: float


@dataclass(frozen=True)
class WarmStartSpec:
    source: str | None
    top_k: int


@dataclass(frozen=True)
class ConfirmSpec:
    """The confirmation stage (:mod:`hpo.ranking`): ``top_k`` configs rerun on ``seeds`` more seeds (0: off)."""

    top_k: int = 0
    seeds: int = 2
    rank_by: str = "mean"  # one of hpo.config.sections.RANK_BY


@dataclass(frozen=True)
class DistillSpec:
    """Distillation (:mod:`hpo.study.teacher`): ``teacher`` is a registered model's URI (None: off)."""

    teacher: str | None = None


MAX_RETRY_S = 1080  # the longest MLflow's client retries: 10 retries at most 120 s apart (hpo.stores.tracking)


@dataclass(frozen=True)
class TrackingSpec:
    """How hpo talks to MLflow: ``retry_s`` seconds of retries before a write fails (a server that went away);
    ``system_metrics``: each trial's machine use logged per epoch under ``system/``."""

    retry_s: float = 240.0
    system_metrics: bool = True


@dataclass(frozen=True)
class StudySpec:
    """Everything a study run needs, checked. ``trainer`` is the :class:`TrainConfig` every trial starts
    from (fixed search values included); a trial replaces only what it sampled."""

    study: StudySettings
    storage: StorageSpec
    lease: LeaseSpec
    model: ModelSpec
    data: DataSpec | None  # None: the task reads its own (task=custom)
    space: SearchSpace
    trainer: TrainConfig
    resources: ResourcesSpec
    cluster: ClusterSpec
    sampler: Component
    scheduler: Component
    warm_start: WarmStartSpec
    confirm: ConfirmSpec
    register_best: bool
    config_yaml: str
    models: dict[str, ModelChoice] = field(default_factory=dict)  # search.model's choices; empty: spec.model only
    task: str = "text_classification"  # trainers.tasks.TASKS: what a trial fine-tunes for
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def objective(self) -> Objective:
        return self.study.objective

    @property
    def study_dir(self) -> Path:
        return self.storage.study_dir(self.study.name)
