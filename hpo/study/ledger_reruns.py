"""The study ledger's writes for confirmation reruns (:mod:`hpo.ranking`), kept beside :mod:`hpo.study.ledger` (whose
:class:`~hpo.study.ledger.StudyLedger` they are part of: the one writer of the registry and MLflow) to keep each file
short. Reruns are not told to Optuna: its sampler learns from the search alone.
"""

from __future__ import annotations

from hpo.ranking import ConfirmationSummary, summary_of
from hpo.states import TrialState


class ConfirmationWrites:
    """Mixed into :class:`~hpo.study.ledger.StudyLedger`; uses its ``registry``, ``mlflow``, ``spec`` and ``progress``."""

    def rerun_started(self, number: int, seed: int) -> None:
        trial = self.registry.trial(self.name, number)
        restarted = any((c.trial_number, c.seed) == (number, seed) for c in self.registry.confirmations(self.name))
        self.registry.upsert_confirmation(self.name, number, seed, state=TrialState.RUNNING, epochs=0, best_metric=None)
        run_id = self.mlflow.open_rerun_run(number, seed, {**self.spec.space.fixed, **trial.params},
                                            trial.mlflow_run_id, restarted)
        self.registry.upsert_confirmation(self.name, number, seed, mlflow_run_id=run_id)
        self.progress.message(f"confirming trial {number}'s config on seed {seed}")

    def rerun_ended(self, number: int, seed: int, epochs: list[dict[str, float]] | None, error: str | None) -> None:
        """A rerun's end: its epochs (completed), an error (failed), or neither (stopped: rerun on resume)."""
        state = TrialState.COMPLETED if epochs else TrialState.FAILED if error else TrialState.INTERRUPTED
        best = self.objective.best(e.get(self.objective.metric) for e in epochs or [])
        record = self.registry.upsert_confirmation(self.name, number, seed, state=state, best_metric=best,
                                                   epochs=len(epochs or []))
        self.mlflow.close_rerun_run(record.mlflow_run_id, state, epochs or [])
        outcome = f"{self.objective.metric} {best:.4f}" if best is not None else (error or "stopped")
        self.progress.message(f"trial {number}'s config on seed {seed}: {state.value}, {outcome}")

    def reconcile_reruns(self) -> None:
        """Closes the MLflow run of a rerun the registry saw end before a crash cut MLflow short (its epochs died
        with the driver; the registry keeps its best value and state)."""
        for rerun in self.registry.confirmations(self.name):
            if (rerun.state != TrialState.RUNNING and rerun.mlflow_run_id
                    and self.mlflow.run_status(rerun.mlflow_run_id) == "RUNNING"):
                self.mlflow.close_rerun_run(rerun.mlflow_run_id, rerun.state, [])

    def confirmation(self) -> ConfirmationSummary | None:
        """The confirmed ranking of the study's top configs, when ``confirm.top_k`` is on."""
        confirm = self.spec.confirm
        if not confirm.top_k:
            return None
        return summary_of(self.registry.trials(self.name), self.registry.confirmations(self.name), self.objective,
                          confirm.top_k, confirm.rank_by)
