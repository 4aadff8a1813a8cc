"""``hpo ui``: the MLflow UI for a study's store, opened on the study's runs page.

MLflow 3 opens an experiment on its GenAI "Overview" page (traces, empty for a study); a study's trials are on
``#/experiments/<id>/runs``, folded under the study's run, with no metric among the columns on a first visit (MLflow
keeps a page's columns in the browser). :func:`runs_url` is that page in the study's shared view
(:func:`hpo.stores.tracking.trials_view`: the trials flat, their metric and parameters as columns, best first);
:func:`serve` starts ``mlflow server`` on 127.0.0.1 (a store on a tracking server needs no server of ours: its URL is
printed). Example::

    >>> runs_url("http://127.0.0.1:5000", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?viewStateShareKey=hpo-trials'
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hpo.stores.tracking import TRIALS_VIEW

LOCALHOST = "127.0.0.1"


def runs_url(base: str, experiment_id: str | None) -> str:
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={TRIALS_VIEW}"


def is_server(tracking_uri: str) -> bool:
    """A tracking server (its own UI) rather than a database or folder MLflow reads directly."""
    return tracking_uri.startswith(("http://", "https://"))


def serve(tracking_uri: str, port: int, host: str = LOCALHOST, log: Path | None = None,
          ready_timeout_s: float = 120.0) -> subprocess.Popen:
    """Starts ``mlflow server`` over ``tracking_uri`` and returns once it answers ``/health``.

    Binds ``host`` (127.0.0.1 unless told otherwise: the UI can change and delete runs). Raises
    ``RuntimeError`` with the server's last output if it exits or does not answer in time.
    """
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the server outlives this call
    # Its own process group: `mlflow server` runs its web server as a child, and stop() ends both.
    process = subprocess.Popen([mlflow, "server", "--backend-store-uri", tracking_uri, "--host", host,
                                "--port", str(port), "--workers", "1"], stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            raise RuntimeError(f"mlflow server exited with code {process.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"mlflow server did not answer on {host}:{port} within {ready_timeout_s:.0f}s")


def stop(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Ends the server and its web-server child (SIGTERM to the group, SIGKILL if it lingers)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
