"""The states a trial and a study go through, as types (stored by value in the registry).

A trial is RUNNING until the ledger closes it as COMPLETED (trained to the end or stopped by its own
early stopping), PRUNED (stopped by the scheduler: ASHA found it weak), STOPPED (cut short because the study
ended: its time or epoch budget was used up, its target reached or its plateau rule fired), FAILED (an error, or
out of GPU memory) or INTERRUPTED (``hpo stop``, SIGTERM, Ctrl-C: resumable). A study is RUNNING, STOPPING
(``hpo stop`` asked its driver to stop), STOPPED (resumable), COMPLETED or FAILED (its driver crashed: resumable).

Example::

    >>> TrialState("pruned").finished, TrialState.INTERRUPTED.finished, TrialState.STOPPED.has_result
    (True, False, True)
    >>> StudyStatus.STOPPING.driven
    True
"""

from __future__ import annotations

from enum import Enum


class TrialState(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        """Counts toward ``num_samples``; a resume leaves it as it is."""
        return self in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.STOPPED, TrialState.FAILED)

    @property
    def has_result(self) -> bool:
        """Ended with a value that ranks it among the study's trials (its best epoch)."""
        return self in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.STOPPED)

    @property
    def cut_short(self) -> bool:
        """Ended before its last epoch by something other than its own early stopping."""
        return self in (TrialState.PRUNED, TrialState.STOPPED)

    def __str__(self) -> str:
        return self.value


class StudyStatus(str, Enum):
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def driven(self) -> bool:
        """A driver should be alive for this status (if its heartbeat is stale, it died)."""
        return self in (StudyStatus.RUNNING, StudyStatus.STOPPING)

    @property
    def mlflow_status(self) -> str:
        """The MLflow run status of a study that ended with this status."""
        return {StudyStatus.COMPLETED: "FINISHED", StudyStatus.STOPPED: "KILLED"}.get(self, "FAILED")

    def __str__(self) -> str:
        return self.value
