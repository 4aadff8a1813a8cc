"""The study ledger against real stores in a temp dir (SQLite registry, SQLite Optuna, SQLite-backed MLflow),
without Ray: Ray's events are replayed as the tuner's callback would hand them over."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState as Optuna

from hpo.config.compose import build_spec, compose
from hpo.reporting.progress import PlainProgress, Tally
from hpo.result_keys import OOM_KEY
from hpo.states import StudyStatus, TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry
from hpo.stores.study_run import StudyRun
from hpo.study.ledger import FAIL_REASON_ATTR, StudyLedger
from hpo.study.stopping import StopSignal
from tests.helpers.stores import assert_stores_agree, stores_of
from trainers.checkpoint import BEST_DIR, STATE_FILE, SUMMARY_FILE


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ledger")


class Harness:
    """A study's three stores and its ledger, as :func:`hpo.study.run.run_study` opens them."""

    def __init__(self, root, name: str, *overrides: str) -> None:
        self.spec = build_spec(compose(["model=tiny_bert", f"storage.root={root}", f"study.name={name}",
                                        "trainer.max_epochs=3", *overrides]))
        self.registry = Registry.open(self.spec.storage.registry_url)
        if self.registry.get(name) is None:
            self.registry.create(name, self.spec.config_yaml, 4, "val_accuracy", "max",
                                 optuna_url=self.spec.storage.optuna_url)
        self.spec.study_dir.mkdir(parents=True, exist_ok=True)
        self.signal, self.lines = StopSignal(), []
        self.ledger = self.reopen()

    def reopen(self) -> StudyLedger:
        """A new driver's ledger over the same stores (as after a crash)."""
        record = self.registry.require(self.spec.name)
        store = CheckpointStore(self.spec.storage.checkpoints)
        mlflow = StudyRun(self.spec, store, parent_run_id=record.mlflow_parent_run_id)
        self.registry.update(self.spec.name, mlflow_experiment_id=mlflow.experiment_id,
                             mlflow_parent_run_id=mlflow.run_id)
        study = optuna.create_study(study_name=self.spec.name, storage=self.spec.storage.optuna_url,
                                    sampler=optuna.samplers.RandomSampler(seed=0),
                                    directions=[o.direction for o in self.spec.study.objectives], load_if_exists=True)
        self.signal = StopSignal()
        return StudyLedger(self.spec, self.registry, study, mlflow, store, self.signal,
                           progress=PlainProgress(self.spec.name, Tally(self.spec.objective, 8, 3), self.lines.append))

    def run(self, ray_id: str, curve: list[float], **last) -> int:
        number, _ = self.ledger.new_trial(ray_id)
        self.ledger.trial_started(ray_id, f"/nowhere/{ray_id}", None)
        for epoch, value in enumerate(curve, 1):
            self.ledger.epoch_reported(ray_id, {"epoch": epoch, "val_accuracy": value, "val_loss": 1 - value})
        self.ledger.trial_ended(ray_id, {"epoch": len(curve), **last}, errored=False)
        return number

    def agree(self, feedback: str = "pruned") -> dict:
        return assert_stores_agree(self.spec.storage.registry_url, self.spec.storage.tracking_uri, self.spec.name,
                                   feedback)


def test_a_finished_trial_is_complete_everywhere_with_its_best_epoch(root):
    h = Harness(root, "completed")
    number = h.run("a", [0.6, 0.8, 0.7])
    s = h.agree()
    assert s["registry"][number].state == TrialState.COMPLETED
    assert s["optuna"][number].value == pytest.approx(0.8), "ranked by its best epoch, not its last"
    assert f"trial {number} completed after 3 epoch(s), best val_accuracy=0.8000" in h.lines[-1]
    assert "1/8 trials (0 running, 1 completed, 0 pruned, 0 failed)" in h.lines[-1]


def test_a_scheduler_stopped_trial_is_pruned_in_optuna_with_its_curve(root):
    h = Harness(root, "pruned")
    number = h.run("a", [0.55, 0.6])
    s = h.agree()
    assert s["registry"][number].state == TrialState.PRUNED
    assert s["optuna"][number].state == Optuna.PRUNED
    assert s["optuna"][number].intermediate_values == {1: 0.55, 2: 0.6}


def test_feedback_complete_tells_optuna_a_pruned_trial_finished_at_its_best(root):
    h = Harness(root, "complete_feedback", "search.feedback=complete")
    number = h.run("a", [0.65, 0.6])
    s = h.agree(feedback="complete")
    assert s["registry"][number].state == TrialState.PRUNED
    assert (s["optuna"][number].state, s["optuna"][number].value) == (Optuna.COMPLETE, pytest.approx(0.65))


def test_out_of_memory_is_failed_for_the_user_and_infeasible_for_the_sampler(root):
    """TPE and GP skip FAILED trials (and would propose the same batch size again); an infeasible one ranks
    below every feasible trial."""
    h = Harness(root, "oom")
    number = h.run("a", [], **{OOM_KEY: 1.0})
    s = h.agree()
    assert (s["registry"][number].state, s["registry"][number].fail_reason) == (TrialState.FAILED, "oom")
    ot = s["optuna"][number]
    assert ot.state == Optuna.PRUNED and ot.constraints == {"oom": 1.0} and ot.user_attrs[FAIL_REASON_ATTR] == "oom"
    assert s["mlflow"][number].data.tags["hpo.fail_reason"] == "oom"


def test_an_error_is_a_failed_trial_everywhere(root):
    h = Harness(root, "error")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.5})
    h.ledger.trial_ended("a", {"epoch": 1}, errored=True)
    s = h.agree()
    assert s["optuna"][number].state == Optuna.FAIL and s["mlflow"][number].info.status == "FAILED"


def test_an_epoch_reported_twice_is_recorded_once(root):
    h = Harness(root, "twice")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    for _ in range(2):
        h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.5})
    assert h.registry.trial("twice", number).values == {1: 0.5}
    assert stores_of(h.spec.storage.registry_url, h.spec.storage.tracking_uri, "twice")["history"][number] == [(1, 0.5)]


def test_a_stop_leaves_the_running_trial_resumable_and_a_new_driver_continues_it(root):
    h = Harness(root, "stopped")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.6})
    h.signal.request("stopped by user (hpo stop)")
    h.ledger.trial_ended("a", {"epoch": 1}, errored=False)
    h.ledger.close_open_trials(StudyStatus.STOPPED)
    s = h.agree()
    assert s["registry"][number].state == TrialState.INTERRUPTED and s["optuna"][number].state == Optuna.RUNNING
    assert s["mlflow"][number].info.status == "KILLED"

    ledger = h.reopen()
    ledger.reconcile()
    assert ledger.continue_trial("b", number) == s["registry"][number].params
    ledger.trial_started("b", "/nowhere/b", None)
    for epoch in (1, 2, 3):  # epoch 1 again (a checkpoint older than the record): recorded once
        ledger.epoch_reported("b", {"epoch": epoch, "val_accuracy": 0.6 + epoch / 100})
    ledger.trial_ended("b", {"epoch": 3}, errored=False)
    s = h.agree()
    assert len(s["mlflow"]) == 1 and s["registry"][number].state == TrialState.COMPLETED
    assert s["optuna"][number].intermediate_values == {1: 0.6, 2: 0.62, 3: 0.63}


def test_a_resumed_trial_records_the_epochs_its_checkpoint_ran_ahead_of_the_stores(root, tmp_path):
    """A DDP group's Ray Train runs ahead of the driver: a driver killed at epoch 1 can leave a checkpoint of epoch 3.
    The checkpoint's ``history`` fills the stores' missing epochs 2 and 3, each once, before the trial goes on."""
    h = Harness(root, "ran_ahead")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.6})  # then the driver dies
    history = [{"epoch": e, "val_accuracy": 0.6 + e / 100} for e in (1, 2, 3)]
    checkpoint = tmp_path / "checkpoint_000002"
    checkpoint.mkdir()
    (checkpoint / SUMMARY_FILE).write_text(json.dumps({"epoch": 3, "metrics": history[-1], "history": history}))

    ledger = h.reopen()
    ledger.reconcile()
    ledger.continue_trial("b", number)
    ledger.trial_started("b", "/nowhere/b", str(checkpoint))
    assert f"trial {number} resumed after epoch 3" in "\n".join(h.lines)
    ledger.epoch_reported("b", {"epoch": 3, "val_accuracy": 0.9})  # Ray Train reports epoch 3 again: not recorded
    ledger.trial_ended("b", {"epoch": 3}, errored=False)
    s = h.agree()
    assert s["registry"][number].state == TrialState.COMPLETED
    assert s["registry"][number].curve == {"1": 0.6, "2": 0.62, "3": 0.63}
    assert s["optuna"][number].intermediate_values == {1: 0.6, 2: 0.62, 3: 0.63}


def test_a_study_ended_by_a_rule_records_its_open_trials_stopped(root):
    h = Harness(root, "ruled")
    number, _ = h.ledger.new_trial("a")  # suggested, never started
    h.ledger.close_open_trials(StudyStatus.COMPLETED)
    s = h.agree()
    assert s["registry"][number].state == TrialState.STOPPED and s["optuna"][number].state == Optuna.PRUNED


def test_a_trial_the_studys_budget_cut_short_is_stopped_not_pruned(root):
    """ASHA did not prune it: the study's time budget (or another stop rule) ended it, and every count says so."""
    h = Harness(root, "budget")
    h.ledger.study_ending = lambda: True  # as run_study wires it: a stop rule has fired
    number = h.run("a", [0.55])
    s = h.agree()
    assert s["registry"][number].state == TrialState.STOPPED and s["registry"][number].state.finished
    assert s["mlflow"][number].data.tags["hpo.trial_status"] == "stopped"
    assert f"trial {number} stopped after 1 epoch(s)" in h.lines[-1]
    assert "(0 running, 0 completed, 0 pruned, 1 stopped, 0 failed)" in h.lines[-1]


def test_resume_refills_every_metric_of_an_epoch_mlflow_missed_from_the_trials_checkpoint(root, tmp_path):
    """The registry recorded epoch 2 and the driver died before MLflow did (the registry keeps the objective alone):
    reconcile logs epoch 2's every metric from the trial's newest checkpoint, train_loss too, each once."""
    h = Harness(root, "refill")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", str(tmp_path), None)  # tmp_path: the trial's Ray folder
    h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.6, "train_loss": 0.5})
    h.registry.upsert_trial(h.spec.name, number, epochs=2, curve={"1": 0.6, "2": 0.7}, last_metric=0.7,
                            best_metric=0.7)  # the registry writes epoch 2, and the driver dies
    history = [{"epoch": e, "val_accuracy": value, "train_loss": loss}
               for e, value, loss in ((1, 0.6, 0.5), (2, 0.7, 0.4))]
    checkpoint = tmp_path / "checkpoint_000001"
    (checkpoint / BEST_DIR).mkdir(parents=True)
    (checkpoint / STATE_FILE).write_bytes(b"")
    (checkpoint / SUMMARY_FILE).write_text(json.dumps({"epoch": 2, "metrics": history[-1], "history": history}))

    h.reopen().reconcile()
    run_id = h.registry.require_trial(h.spec.name, number).mlflow_run_id
    client = MlflowClient(h.spec.storage.tracking_uri)
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")) == [(1, 0.5), (2, 0.4)]
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")) == [(1, 0.6), (2, 0.7)]


@pytest.mark.parametrize("crash_after", ["registry", "optuna"])
def test_resume_replays_what_a_crash_between_two_writes_kept_from_optuna_and_mlflow(root, crash_after):
    """A driver dies after recording an epoch and the trial's end in the registry (or in the registry and
    Optuna) but before MLflow heard of them: the next driver's reconcile makes the three agree."""
    h = Harness(root, f"crash_after_{crash_after}")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    h.ledger.epoch_reported("a", {"epoch": 1, "val_accuracy": 0.6})
    record = h.registry.upsert_trial(h.spec.name, number, epochs=2, curve={"1": 0.6, "2": 0.7}, last_metric=0.7,
                                     best_metric=0.7, state=TrialState.PRUNED)  # the registry writes...
    if crash_after == "optuna":
        h.ledger.trials[number].report(0.7, 2)
        h.ledger.study.tell(number, state=Optuna.PRUNED)
    # ...and the driver dies.
    with pytest.raises(AssertionError):
        h.agree()

    h.reopen().reconcile()
    s = h.agree()
    assert s["optuna"][number].state == Optuna.PRUNED and s["optuna"][number].intermediate_values == {1: 0.6, 2: 0.7}
    assert s["mlflow"][number].data.tags["hpo.trial_status"] == "pruned" and record.epochs == 2


def test_champion_moves_only_to_a_better_registered_version(root, tmp_path):
    h = Harness(root, "champion")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # logging copies the folder; nothing loads it here
    client = h.ledger.mlflow.client
    for value, number in ((0.80, 0), (0.75, 1), (0.90, 2), (0.90, 3)):
        h.ledger.mlflow.log_best_model(folder, value, number)
    champion = client.get_model_version_by_alias(h.spec.name, "champion")
    assert (str(champion.version), champion.tags["hpo.trial_number"]) == ("3", "2"), "ties keep the earlier champion"


def test_a_multi_objective_trial_tells_optuna_its_vector_and_costs_are_the_least_measured(root):
    """Optuna's multi-objective trials take no intermediate values (optuna#3450): ASHA prunes them alone."""
    h = Harness(root, "pareto", "study.objectives=[val_accuracy:max,latency_ms:min]")
    number, _ = h.ledger.new_trial("a")
    h.ledger.trial_started("a", "/nowhere/a", None)
    for epoch, (accuracy, latency) in enumerate([(0.6, 5.0), (0.8, 3.0), (0.7, 2.0)], 1):
        h.ledger.epoch_reported("a", {"epoch": epoch, "val_accuracy": accuracy, "latency_ms": latency})
    h.ledger.trial_ended("a", {"epoch": 3}, errored=False)
    pruned, _ = h.ledger.new_trial("b")
    h.ledger.trial_started("b", "/nowhere/b", None)
    h.ledger.epoch_reported("b", {"epoch": 1, "val_accuracy": 0.5, "latency_ms": 1.0})
    h.ledger.trial_ended("b", {"epoch": 1}, errored=False)

    trials = {t.number: t for t in h.ledger.study.get_trials()}
    assert trials[number].state == Optuna.COMPLETE and trials[number].values == [0.8, 2.0]
    assert h.registry.trial("pareto", number).objectives == {"val_accuracy": 0.8, "latency_ms": 2.0}
    assert trials[pruned].state == Optuna.PRUNED and trials[pruned].intermediate_values == {}
    assert h.registry.trial("pareto", number).values == {1: 0.6, 2: 0.8, 3: 0.7}, "the registry keeps the curve"


def test_a_rerun_cut_short_between_its_run_and_its_record_reopens_that_run(root):
    """CI's kill once fell after MLflow created a rerun's run and before the registry held its id: the next
    driver found no id and made a second run. It now looks for the run by its tags."""
    h = Harness(root, "rerun_crash", "confirm.top_k=1")
    number = h.run("a", [0.6, 0.7])
    h.registry.upsert_confirmation(h.spec.name, number, 1, state=TrialState.RUNNING, epochs=0, best_metric=None)
    params = {**h.spec.space.fixed, **h.registry.trial(h.spec.name, number).params}
    h.ledger.mlflow.open_rerun_run(number, 1, params, None, restarted=False)  # ...and the driver dies.

    ledger = h.reopen()
    ledger.rerun_started(number, 1)
    ledger.rerun_ended(number, 1, [{"epoch": 1, "val_accuracy": 0.65}], None)
    runs = ledger.mlflow.client.search_runs([ledger.mlflow.experiment_id], "tags.`hpo.role` = 'confirmation'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert h.registry.confirmations(h.spec.name)[0].mlflow_run_id == runs[0].info.run_id


def test_a_rerun_the_registry_saw_end_has_its_mlflow_run_closed_on_resume(root):
    h = Harness(root, "rerun_closed", "confirm.top_k=1")
    number = h.run("a", [0.6, 0.7])
    h.ledger.rerun_started(number, 1)
    h.registry.upsert_confirmation(h.spec.name, number, 1, state=TrialState.COMPLETED, epochs=1, best_metric=0.65)
    # ...and the driver dies before MLflow hears of the end.
    ledger = h.reopen()
    ledger.reconcile()
    run_id = h.registry.confirmations(h.spec.name)[0].mlflow_run_id
    run = ledger.mlflow.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["hpo.trial_status"] == "completed"
