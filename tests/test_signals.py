"""SIGTERM and Ctrl-C while a study runs (hpo.study.signals): the first asks for the graceful stop, a second stops at
once, and while the study's records are being written a second one waits for them. Real signals to this process."""

from __future__ import annotations

import os
import signal

import pytest

from hpo.study.signals import StopNow, StopOnSignals
from hpo.study.stopping import StopSignal


def _handlers() -> tuple:
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_the_first_signal_requests_the_graceful_stop_and_sets_the_exit_code():
    stop, lines = StopSignal(), []
    before = _handlers()
    with StopOnSignals(stop, lines.append) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set and stop.reason == "SIGTERM received"
        assert signals.exit_code == 143 and "send it again to stop at once" in lines[0]
    assert _handlers() == before, "the previous handlers are back"


def test_a_second_signal_stops_at_once_and_is_found_inside_what_wrapped_it():
    stop = StopSignal()
    with StopOnSignals(stop, lambda line: None) as signals:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(StopNow) as raised:
            os.kill(os.getpid(), signal.SIGINT)
    assert signals.exit_code == 130 and raised.value.signum == signal.SIGINT
    try:  # as Ray's compiled ray.wait hands it on: a SystemError caused by it
        raise SystemError("returned a result with an exception set") from raised.value
    except SystemError as wrapped:
        assert StopNow.within(wrapped) is raised.value
    assert StopNow.within(ValueError("unrelated")) is None


def test_while_closing_a_second_signal_waits_and_a_third_does_not():
    stop, lines = StopSignal(), []
    with StopOnSignals(stop, lines.append) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        with signals.closing():
            os.kill(os.getpid(), signal.SIGTERM)  # lets the records be written
            assert "recording how the study ended" in lines[-1]
            with pytest.raises(StopNow):
                os.kill(os.getpid(), signal.SIGTERM)
