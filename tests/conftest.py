"""Shared fixtures: real data, a locally built tiny BERT, a real local Ray, a real `mlflow server`.

The data is the SST-2 copy shipped in data/sst2 (HPO_DATA_DIR overrides). Every process a fixture starts
is stopped by PID at the end of the session. Tests marked ``integration`` start Ray, servers or whole
studies; the rest (``make test-fast``) start nothing.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpo.config.resolvers import PROJECT_ROOT, first_existing
from hpo.env import set_defaults
from tests.helpers import servers
from trainers.csv_files import open_text
from trainers.tiny import build_tiny_bert

SST2_DIR = Path(os.environ.get("HPO_DATA_DIR", PROJECT_ROOT / "data" / "sst2"))
set_defaults()  # what the `hpo` command sets when it starts; tests drive studies in-process too


def sst2_file(split: str) -> Path:
    return Path(first_existing(str(SST2_DIR / f"{split}.csv"), str(SST2_DIR / f"{split}.csv.gz")))


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    assert sst2_file("train").is_file(), f"real SST-2 not found at {SST2_DIR}: set HPO_DATA_DIR"
    return SST2_DIR


@pytest.fixture(scope="session")
def small_sst2(sst2_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """The first 300 train and 100 dev rows of the real SST-2, as their own CSVs."""
    out = tmp_path_factory.mktemp("sst2_small")
    paths = {}
    for split, rows in (("train", 300), ("dev", 100)):
        with open_text(sst2_file(split)) as src:
            reader = csv.reader(src)
            lines = [next(reader) for _ in range(rows + 1)]
        paths[split] = out / f"{split}.csv"
        with paths[split].open("w", encoding="utf-8", newline="") as dst:
            csv.writer(dst, lineterminator="\n").writerows(lines)
    return paths


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny_bert")


@pytest.fixture(scope="session")
def local_ray():
    """This process's Ray, shared with the in-process studies of tests/helpers/cli.py."""
    from tests.helpers.cli import session_ray  # here, not above: the fast tier never pays for importing Ray

    session_ray()


@pytest.fixture(scope="session", autouse=True)
def _stop_session_ray() -> Iterator[None]:
    """Stops this process's Ray (if a test started it) when the pytest run ends."""
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """An S3-compatible server on 127.0.0.1 (`moto.server`, pip-installable; no AWS account can be reached
    here): real HTTP, the S3 API as pyarrow and Ray speak it. Yields ``host:port``."""
    port = servers.free_port()
    log = (tmp_path_factory.mktemp("s3") / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto server did not start: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        servers.stop_group(proc, signal.SIGTERM)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` with a SQLite store."""
    root = tmp_path_factory.mktemp("mlflow_server")
    with servers.mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        yield uri


@pytest.fixture(scope="module")
def mlflow_server_on_postgres(postgres_server, tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` whose backend store is a PostgreSQL database (as in docker/)."""
    store = servers.fresh_database(postgres_server, "mlflow_store")
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow_pg"), store) as uri:
        yield uri


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (see :class:`PostgresServer`); yields its base URL."""
    server = servers.start_postgres()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_db(postgres_server, request) -> str:
    """A fresh database on the PostgreSQL server for one test; its SQLAlchemy URL."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return servers.fresh_database(postgres_server, name)


