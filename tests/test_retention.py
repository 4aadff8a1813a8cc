"""What a study keeps once trials end: finished trials their best model, pruned ones nothing, a cap honoured."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from hpo.config.spec import StorageSpec
from hpo.states import TrialState
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.retention import Retention
from trainers.checkpoint import BEST_DIR, RETIRED_FILE, STATE_FILE, SUMMARY_FILE
from trainers.compact import WEIGHTS_FILE
from trainers.objective import Objective


def _trial(root: Path, number: int, state: TrialState, value: float, model_bytes: int = 100):
    """A trial folder as Ray leaves it: its latest checkpoint with resume state and best/."""
    checkpoint = root / f"trial_{number}" / "checkpoint_000002"
    (checkpoint / BEST_DIR).mkdir(parents=True)
    (checkpoint / BEST_DIR / WEIGHTS_FILE).write_bytes(b"w" * model_bytes)
    (checkpoint / WEIGHTS_FILE).write_bytes(b"w" * model_bytes)
    (checkpoint / STATE_FILE).write_bytes(b"s" * 2 * model_bytes)
    (checkpoint / SUMMARY_FILE).write_text('{"epoch": 2, "metrics": {}}')
    (root / f"trial_{number}" / "result.json").write_text("{}")
    return SimpleNamespace(number=number, state=state, best_metric=value, ray_trial_dir=str(checkpoint.parent),
                           checkpoint=str(checkpoint))


def _retention(root: Path, keep: str = "best", max_gb: float | None = None) -> tuple[Retention, list[str]]:
    storage = StorageSpec(root=root, checkpoints=str(root), optuna_url="", registry_url="", tracking_uri="",
                          keep=keep, max_gb=max_gb)
    messages: list[str] = []
    return Retention(CheckpointStore(str(root)), storage, Objective("val_accuracy", "max"), messages.append), messages


def test_finished_trials_keep_their_model_and_pruned_ones_only_their_metrics(tmp_path):
    retention, _ = _retention(tmp_path)
    store = CheckpointStore(str(tmp_path))
    done = _trial(tmp_path, 0, TrialState.COMPLETED, 0.80)
    pruned = _trial(tmp_path, 1, TrialState.PRUNED, 0.70)
    for record in (done, pruned):
        retention.trial_ended(record)

    kept = Path(done.checkpoint)
    assert sorted(p.name for p in kept.iterdir()) == sorted([BEST_DIR, RETIRED_FILE, SUMMARY_FILE])
    assert store.latest_of_trial(done.ray_trial_dir, None) == str(kept)  # its model is still found
    assert not Path(pruned.checkpoint).exists() and (tmp_path / "trial_1" / "result.json").exists()


def test_a_pruned_trial_keeps_its_model_only_while_it_is_the_best(tmp_path):
    retention, _ = _retention(tmp_path)
    retention.trial_ended(_trial(tmp_path, 0, TrialState.COMPLETED, 0.80))
    leader = _trial(tmp_path, 1, TrialState.PRUNED, 0.90)  # ASHA stopped it at a rung, still the best
    loser = _trial(tmp_path, 3, TrialState.PRUNED, 0.75)
    assert retention.keeps_model(leader) and not retention.keeps_model(loser)
    retention.trial_ended(leader)
    assert (Path(leader.checkpoint) / BEST_DIR).is_dir() and not (Path(leader.checkpoint) / STATE_FILE).exists()

    retention.trial_ended(_trial(tmp_path, 2, TrialState.COMPLETED, 0.95))
    assert not Path(leader.checkpoint).exists()


def test_the_cap_deletes_the_worst_finished_models_first_and_never_the_best(tmp_path):
    retention, messages = _retention(tmp_path, max_gb=400e-9)  # two retired trials (a model of 100 bytes + summary) fit
    records = [_trial(tmp_path, n, TrialState.COMPLETED, value) for n, value in enumerate([0.85, 0.80, 0.90])]
    for record in records:
        retention.trial_ended(record)
    assert [Path(r.checkpoint).exists() for r in records] == [True, False, True]
    assert messages == ["storage.max_gb: deleted trial 1's model (0 MB)"]


@pytest.mark.parametrize("state", [TrialState.PRUNED, TrialState.COMPLETED])
def test_keep_all_deletes_nothing(tmp_path, state):
    retention, _ = _retention(tmp_path, keep="all")
    record = _trial(tmp_path, 0, state, 0.5)
    retention.trial_ended(record)
    assert (Path(record.checkpoint) / STATE_FILE).exists() and retention.keeps_model(record)


def test_when_the_study_ends_only_the_best_model_stays(tmp_path):
    retention, _ = _retention(tmp_path)
    records = [_trial(tmp_path, n, TrialState.COMPLETED, value) for n, value in enumerate([0.85, 0.90, 0.80])]
    for record in records:
        retention.trial_ended(record)
    retention.study_ended()
    assert [Path(r.checkpoint).exists() for r in records] == [False, True, False]


def test_a_checkpoint_with_a_short_file_is_not_resumed_from(tmp_path):
    """A full disk can cut any file Ray copies short while the summary arrives whole: the summary's file sizes tell."""
    from trainers.checkpoint import is_whole

    summary = {"epoch": 2, "files": {STATE_FILE: 200, WEIGHTS_FILE: 100, f"{BEST_DIR}/{WEIGHTS_FILE}": 100}}
    whole = {STATE_FILE: 200, WEIGHTS_FILE: 100, f"{BEST_DIR}/{WEIGHTS_FILE}": 100, SUMMARY_FILE: 30}
    assert is_whole(summary, whole)
    assert not is_whole(summary, whole | {WEIGHTS_FILE: 64})
    retired = {f"{BEST_DIR}/{WEIGHTS_FILE}": 100, SUMMARY_FILE: 30, RETIRED_FILE: 40}
    assert is_whole(summary, retired) and not is_whole(summary, {SUMMARY_FILE: 30, RETIRED_FILE: 40})
