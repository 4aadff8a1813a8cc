"""``hpo refit``: the study's best config trained once more, for its best epoch count, on the training data
(or training + validation), as one MLflow run beside the study, registered as the study's next model version.

Why: a search picks a config by its validation curve; the model a user ships is often better trained again on
all labelled data for the epochs that curve said were enough. With ``--with-validation`` the validation rows
are in the training set, so the metrics it reports on them are not held out (the run is tagged so) and the
version gets the alias ``refit``, never ``champion``, which is chosen by held-out validation.
A study that distils refits with its teacher: the caller's ``prepare`` puts the teacher's outputs on the rows.
Example::

    hpo refit sst2_minilm --with-validation trainer.num_threads=4
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from omegaconf import OmegaConf

from hpo.config.compose import build_spec, stored_config
from hpo.config.model_choice import StudyData, trial_data, trial_settings, with_models_of
from hpo.config.sections import as_study_config
from hpo.config.spec import StudySpec
from hpo.stores.datasets import split_dataset
from hpo.stores.model_runs import RefitRun
from hpo.stores.registry import Registry, RegistryError, StudyRecord
from trainers.checkpoint import full_model
from trainers.tasks import load_task


def best_epoch(registry: Registry, record: StudyRecord) -> int:
    """The first epoch at which the best trial reached its best value."""
    trial = registry.trial(record.name, record.best_trial_number) if record.best_trial_number is not None else None
    if trial is None or not trial.values:
        raise RegistryError(f"study {record.name!r} has no finished trial with a result to refit")
    return min(e for e, v in trial.values.items() if v == trial.best_metric)


def refit_spec(record: StudyRecord, overrides: list[str], given: list[str]) -> StudySpec:
    """The study's stored config with ``overrides`` (``key=value``) applied, checked like a sweep's; ``given``:
    URLs its user passed, whose passwords fill the stored config's masked ones (:mod:`hpo.secrets`)."""
    cfg = OmegaConf.merge(stored_config(record.config_yaml, given), OmegaConf.from_dotlist(overrides))
    return build_spec(as_study_config(cfg))


class _FinalModel:
    """Logs each epoch to the refit run and keeps the latest weights (not the best epoch's: with validation rows
    in training, picking an epoch by them would be choosing on seen data)."""

    def __init__(self, run: RefitRun, keep: Path) -> None:
        self.run, self.keep, self.epoch = run, keep, 0

    def report(self, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        self.epoch += 1
        self.run.log_epoch(self.epoch, metrics)
        if checkpoint_dir is not None:
            shutil.rmtree(self.keep, ignore_errors=True)
            full_model(checkpoint_dir, self.keep)


def refit(registry: Registry, name: str, overrides: list[str], include_validation: bool,
          prepare: Callable[[StudySpec], StudyData], log: Callable[[str], None] = print) -> str:
    """Trains and registers the refit model; returns its model URI."""
    record = registry.require(name)
    spec = refit_spec(record, overrides, [registry.url])
    if spec.data is None:
        raise RegistryError(f"study {name!r} reads its own data (task=custom): hpo cannot refit it")
    if include_validation and spec.distill.teacher is not None:
        raise RegistryError(f"study {name!r} distils from {spec.distill.teacher}, whose outputs cover the training "
                            "rows only: refit it without --with-validation")
    epochs = best_epoch(registry, record)
    params = record.best_params or {}
    settings = trial_settings(spec.trainer, params, spec.models, max_epochs=epochs, early_stopping_patience=None,
                              resume_from=None, cv_folds=0, num_threads=spec.trainer.num_threads or os.cpu_count())
    data = trial_data(prepare(with_models_of(spec, [params])), params)
    datasets = [split_dataset("train", spec.data.train_path, data, data.train, spec.data.train_limit)]
    if include_validation:
        datasets.append(split_dataset("train", spec.data.validation_path, data, data.validation,
                                      spec.data.validation_limit))
        data = data.with_validation_in_training()
    log(f"refit of {name}: trial {record.best_trial_number}'s config for {epochs} epoch(s) on {len(data.train)} rows"
        + (" (training + validation)" if include_validation else ""))
    run = RefitRun(spec, record, epochs, include_validation, params=settings.to_dict(), datasets=datasets)
    with tempfile.TemporaryDirectory(prefix="hpo-refit-") as work:
        final = Path(work) / "model"
        try:
            load_task(spec.task).fine_tune(settings, data, _FinalModel(run, final))
        except BaseException:
            run.fail()
            raise
        return run.finish(final)
