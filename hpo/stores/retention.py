"""What a study keeps of its trials' checkpoints once they end (``storage.keep``, ``storage.max_gb``).

While a trial runs, Ray keeps its latest checkpoint (resume state + ``best/``). Once it ends, resuming it is
no longer possible, so with ``storage.keep: best`` (the default):

- a finished trial keeps its ``best/`` only: its optimizer state and latest weights are deleted; when the
  study ends, only the best trial's model stays (every finished trial's is in its MLflow run by then);
- a pruned or failed trial keeps nothing but its metrics (Ray's ``result.json``, the registry, MLflow), except
  while it is the study's best trial, whose model the study registers at its end;
- with ``storage.max_gb`` set, the worst finished trials' models are deleted first until the study's
  checkpoints fit (the study's best and running trials are never deleted).

``storage.keep: all`` keeps every trial's latest checkpoint whole. Only the driver deletes, and only what
a trial that ended wrote. Example::

    retention = Retention(store, spec.storage, spec.objective, log=print)
    retention.trial_ended(record)  # after the ledger recorded its end
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hpo.config.spec import StorageSpec
from hpo.states import TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import TrialRecord
from trainers.checkpoint import RESUME_STATE, RETIRED_FILE
from trainers.objective import Objective

ENDED = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.STOPPED, TrialState.FAILED)


@dataclass
class _Ended:
    number: int
    completed: bool
    value: float | None
    folders: tuple[str, ...]  # the trial's Ray folders over attempts


class Retention:
    """Deletes, as trials end, what ``storage.keep`` and ``storage.max_gb`` say the study no longer needs."""

    def __init__(self, store: CheckpointStore, storage: StorageSpec, objective: Objective,
                 log: Callable[[str], None], earlier: Iterable[TrialRecord] = ()) -> None:
        """``earlier``: trials of a resumed study that ended in an earlier attempt (already trimmed then)."""
        self.store, self.objective, self.log = store, objective, log
        self.keep_all, self.max_bytes = storage.keep == "all", storage.max_gb and storage.max_gb * 1e9
        self.ended: dict[int, _Ended] = {}
        self.dropped: set[int] = set()
        self.best: int | None = None
        for record in earlier:
            if record.state in ENDED:
                self._remember(record)

    def keeps_model(self, record: TrialRecord) -> bool:
        """Whether a trial that is ending keeps its model (and so uploads it to its MLflow run): a pruned or failed
        one only while it is the study's best."""
        if self.keep_all or record.state not in (TrialState.PRUNED, TrialState.STOPPED, TrialState.FAILED):
            return True
        best = self.ended[self.best].value if self.best is not None else None
        return record.best_metric is not None and self.objective.better(record.best_metric, best)

    def trial_ended(self, record: TrialRecord) -> None:
        if self.keep_all or record.state not in ENDED:
            return
        trial = self._remember(record)
        displaced = self.best
        ranked = self.objective.ranked([t for t in self.ended.values() if t.value is not None], key=lambda t: t.value)
        self.best = ranked[0].number if ranked else None
        if trial.completed or trial.number == self.best:
            self._retire(trial)
        else:
            self._drop(trial)
        if displaced is not None and displaced != self.best and not self.ended[displaced].completed:
            self._drop(self.ended[displaced])
        if self.max_bytes:
            self._cap(ranked, self.max_bytes)

    def study_ended(self, keep: int | None = None) -> None:
        """At the study's end every ended trial's model is in MLflow (uploaded when it ended): only the study's
        winner (``keep``: the confirmed one; else the best trial) stays in checkpoint storage, where ``hpo export``
        and the study's record point."""
        if self.keep_all:
            return
        keep = self.best if keep is None else keep
        for trial in self.ended.values():
            if trial.number != keep and trial.number not in self.dropped:
                self._drop(trial)

    def _remember(self, record: TrialRecord) -> _Ended:
        folders = [record.ray_trial_dir, record.checkpoint and record.checkpoint.rsplit("/", 1)[0]]
        trial = _Ended(record.number, record.state == TrialState.COMPLETED, record.best_metric,
                       tuple(dict.fromkeys(f for f in folders if f)))
        self.ended[record.number] = trial
        return trial

    def _checkpoints(self, trial: _Ended) -> list[str]:
        return [c for folder in trial.folders for c in self.store.checkpoints_of(folder)]

    def _retire(self, trial: _Ended) -> None:
        """Drops the resume state, keeping ``best/``; the marker first, so the folder stays readable as whole."""
        for checkpoint in self._checkpoints(trial):
            self.store.write_text(f"{checkpoint}/{RETIRED_FILE}", "resume state deleted: the trial has ended\n")
            for name in RESUME_STATE:
                self.store.delete(f"{checkpoint}/{name}")

    def _drop(self, trial: _Ended) -> None:
        for checkpoint in self._checkpoints(trial):
            self.store.delete(checkpoint)
        self.dropped.add(trial.number)

    def _cap(self, ranked: list[_Ended], max_bytes: float) -> None:
        """Deletes the worst finished trials' models until the study's checkpoints fit ``storage.max_gb``."""
        sizes = {t.number: sum(self.store.size(c) for c in self._checkpoints(t)) for t in self.ended.values()}
        total = sum(sizes.values())  # running trials are not counted: they are never deleted
        for trial in reversed(ranked):
            if total <= max_bytes or trial.number == self.best:
                break
            if trial.number in self.dropped:
                continue
            self._drop(trial)
            total -= sizes[trial.number]
            self.log(f"storage.max_gb: deleted trial {trial.number}'s model ({sizes[trial.number] / 1e6:.0f} MB)")
        if total > max_bytes:
            self.log(f"storage.max_gb={max_bytes / 1e9:g}: the study's checkpoints hold {total / 1e9:.2f} GB "
                     "with only its best model left")
