"""A tracking server that stops answering (hpo.stores.tracking): the retry budget the client gets from
``tracking.retry_s``, and the client that, once the retries ran out, fails every later write at once."""

from __future__ import annotations

import pytest

from hpo.stores.tracking import TrackingGone, WatchedClient, client, retry_settings, set_retry_budget
from tests.helpers.servers import free_port


def test_the_retry_budget_covers_retry_s_within_mlflows_caps():
    for budget in (1, 10, 60, 240, 600, 1080):
        retries, factor = retry_settings(budget)
        waits = [0] + [min(120, factor * 2 ** (k - 1)) for k in range(2, retries + 1)]
        assert sum(waits) >= budget and retries <= 10, budget


def test_a_server_that_does_not_answer_fails_the_first_call_after_its_retries_and_the_rest_at_once(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    set_retry_budget(1)  # one retry, no wait: what tracking.retry_s=1 gives
    watched = WatchedClient(client(f"http://127.0.0.1:{free_port()}"), "http://127.0.0.1:<port>")
    with pytest.raises(TrackingGone, match="stopped answering"):
        watched.get_experiment_by_name("x")
    first = watched.gone
    with pytest.raises(TrackingGone) as again:
        watched.create_experiment("y")
    assert again.value is first
