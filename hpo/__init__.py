"""hpo: hyperparameter search for fine-tuning pretrained models (Hydra -> Ray Tune + Optuna -> MLflow).

The public API, for Python callers (notebooks, benchmarks, your own driver); the ``hpo`` command is built on it.
The shared modules at the top of the tree are public too: :mod:`hpo.ranking` (Pareto front, confirmation
statistics) and :mod:`hpo.inference` (loading and averaging classifiers, the pyfunc classes). Example::

    import hpo

    spec = hpo.build_spec(hpo.compose(["experiment=sst2_minilm", "study.num_samples=4"]))
    outcome = hpo.run_study(spec)                      # blocks until the study ends; resumable with resume=True
    best = hpo.best_of(spec.name, spec.storage.registry_url)
    print(best.value, best.params, best.model_uri)     # models:/sst2_minilm/1

Names are resolved when first used (PEP 562): a Ray worker that imports :mod:`hpo.study.trial` does not pay for
the driver's stack (MLflow, Optuna's plots, the registry), and ``hpo list`` does not start Ray's imports. Where
things live: :mod:`hpo.config` (conf/ -> spec), :mod:`hpo.study` (running a study), :mod:`hpo.stores` (registry,
MLflow, checkpoints), :mod:`hpo.models` (refit, ensemble, export), :mod:`hpo.reporting`, :mod:`hpo.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "compose": "hpo.config.compose",
    "build_spec": "hpo.config.compose",
    "stored_config": "hpo.config.compose",
    "StudySpec": "hpo.config.spec",
    "StorageSpec": "hpo.config.spec",
    "DataSpec": "hpo.config.spec",
    "ModelSpec": "hpo.config.spec",
    "ResourcesSpec": "hpo.config.spec",
    "SearchSpace": "hpo.config.search_space",
    "HYPERPARAMETERS": "hpo.config.search_space",
    "CheckpointStore": "hpo.stores.checkpoints",
    "run_trial": "hpo.study.trial",
    "ConfigError": "hpo.errors",
    "StudyStatus": "hpo.states",
    "TrialState": "hpo.states",
    "Registry": "hpo.stores.registry",
    "RegistryError": "hpo.stores.registry",
    "prepare_study_data": "hpo.study.data",
    "run_study": "hpo.study.run",
    "StudyOutcome": "hpo.reporting.summary",
    "StudyBest": "hpo.reporting.summary",
    "best_of": "hpo.reporting.summary",
    "set_defaults": "hpo.env",
}
__all__ = [
    "CheckpointStore",
    "ConfigError",
    "DataSpec",
    "HYPERPARAMETERS",
    "ModelSpec",
    "Registry",
    "RegistryError",
    "ResourcesSpec",
    "SearchSpace",
    "StorageSpec",
    "StudyBest",
    "StudyOutcome",
    "StudySpec",
    "StudyStatus",
    "TrialState",
    "best_of",
    "build_spec",
    "compose",
    "prepare_study_data",
    "run_study",
    "run_trial",
    "set_defaults",
    "stored_config",
]

if TYPE_CHECKING:
    from hpo.config.compose import build_spec, compose, stored_config
    from hpo.config.search_space import HYPERPARAMETERS, SearchSpace
    from hpo.config.spec import DataSpec, ModelSpec, ResourcesSpec, StorageSpec, StudySpec
    from hpo.env import set_defaults
    from hpo.errors import ConfigError
    from hpo.reporting.summary import StudyBest, StudyOutcome, best_of
    from hpo.states import StudyStatus, TrialState
    from hpo.stores.checkpoints import CheckpointStore
    from hpo.stores.registry import Registry, RegistryError
    from hpo.study.data import prepare_study_data
    from hpo.study.run import run_study
    from hpo.study.trial import run_trial


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
