"""What a resumed study continues: trials Optuna still holds as RUNNING (cut by a crash or `hpo stop`),
each from its newest complete checkpoint."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState as OptunaState

from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry
from hpo.study.searcher import Resume


def interrupted_trials(study: optuna.Study, registry: Registry, store: CheckpointStore) -> list[Resume]:
    """Open trials, oldest first, with the checkpoint each continues from (None: it starts over).

    The driver may have died after Ray wrote a checkpoint and before the registry heard of it, so the
    trial's Ray folders are searched, not only the checkpoint the registry recorded.
    """
    resumes = []
    for trial in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        record = registry.trial(study.study_name, trial.number)
        checkpoint = store.latest_of_trial(record.ray_trial_dir, record.checkpoint) if record else None
        resumes.append(Resume(trial.number, checkpoint))
    return resumes
