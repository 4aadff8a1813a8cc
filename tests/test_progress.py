"""The progress views: the tally's bookkeeping and ETA, and what each view writes (no Ray, no study)."""

import io

import pytest
from rich.console import Console

from hpo.reporting.progress import LiveProgress, PlainProgress, QuietProgress, Tally, make_progress
from trainers.objective import Objective

PARAMS = {"learning_rate": 3e-05, "batch_size": 16}


def _tally(**kw) -> Tally:
    return Tally(Objective("val_loss", "min"), total_trials=4, max_epochs=3, clock_start=0.0, **kw)


def test_the_best_follows_the_objectives_direction_and_restored_trials_count():
    t = _tally()
    t.restore(0, "pruned", 1, 0.50, PARAMS)
    t.started(1, PARAMS)
    t.epoch(1, 1, 0.60)
    t.epoch(1, 2, 0.40)
    assert t.best == (0.40, 1, PARAMS) and t.epochs_used == 3 and t.counts["pruned"] == 1
    t.ended(1, "completed")
    assert (t.finished, t.running, t.finished_epochs) == (2, {}, 3)


def test_epochs_left_uses_what_finished_trials_took_and_the_epoch_budget():
    t = _tally()
    assert t.epochs_left() == 12, "no trial finished yet: every trial at max_epochs"
    t.started(0, PARAMS)
    t.epoch(0, 1, 0.5)
    t.ended(0, "pruned")  # 1 epoch per finished trial so far
    t.started(1, PARAMS)
    assert t.epochs_left() == 2 + 1, "two waiting at 1 epoch, the running one has 1 left"
    assert _tally(epoch_budget=2).epochs_left() == 2


def test_eta_is_the_pace_so_far_times_the_epochs_left(monkeypatch):
    t = _tally()
    monkeypatch.setattr("hpo.reporting.progress.time.time", lambda: 100.0)
    assert t.eta_s() is None, "no epoch yet"
    t.started(0, PARAMS)
    t.epoch(0, 1, 0.5)  # 1 epoch in 100 s; 11 left
    assert t.eta_s() == pytest.approx(1100.0)
    t.time_budget_s = 300.0
    assert t.eta_s() == pytest.approx(200.0), "capped by the time budget left"


def test_plain_lines_name_the_trial_its_outcome_and_the_study_so_far():
    lines = []
    p = PlainProgress("s", _tally(), write=lines.append)
    p.trial_started(0, PARAMS, None)
    p.epoch(0, 1, 0.5)
    p.trial_ended(0, "pruned", None, 1, 0.5)
    assert lines[0] == "[s] trial 0 started: learning_rate=3e-05 batch_size=16"
    assert lines[1] == "[s] trial 0 epoch 1: val_loss=0.5000"
    assert lines[2].startswith("[s] trial 0 pruned after 1 epoch(s), best val_loss=0.5000: learning_rate=3e-05")
    assert "1/4 trials (0 running, 0 completed, 1 pruned, 0 failed) · best val_loss 0.5000 (trial 0)" in lines[2]


def test_quiet_writes_nothing_and_auto_is_plain_when_not_a_terminal(capsys):
    q = QuietProgress("s", _tally())
    q.trial_started(0, PARAMS, None)
    q.trial_ended(0, "completed", None, 3, 0.4)
    assert capsys.readouterr().out == "" and q.tally.finished == 1
    assert type(make_progress("auto", "s", _tally())) is PlainProgress  # pytest captures stdout: not a tty


def test_the_live_block_shows_counts_best_epochs_and_running_trials():
    out = io.StringIO()
    live = LiveProgress("s", _tally(), console=Console(file=out, force_terminal=True, width=150))
    with live:
        live.trial_started(0, PARAMS, None)
        live.epoch(0, 1, 0.5)
        live.trial_started(1, PARAMS, None)
        live.epoch(1, 1, 0.45)
        live.trial_ended(0, "pruned", None, 1, 0.5)
        live.live.refresh()
    text = out.getvalue()
    assert "1/4 trials" in text and "1 running" in text and "1 pruned" in text
    assert "best val_loss" in text and "0.4500" in text and "(trial 1)" in text
    assert "epochs 2/12" in text and "trial 1: epoch 1/3" in text
    assert "trial 0 pruned after 1 epoch(s)" in text
    assert "\x1b[" in text, "a terminal gets the redrawn block"
