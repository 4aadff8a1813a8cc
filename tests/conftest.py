"""Shared fixtures: real data, a locally built tiny BERT, a real local Ray, a real `mlflow server`.

The data is the SST-2 copy shipped in data/sst2 (HPO_DATA_DIR overrides). Every process a fixture starts
is stopped by PID at the end of the session. Tests marked ``integration`` start Ray, servers or whole
studies; the rest (``make test-fast``) start nothing.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hpo.config.resolvers import PROJECT_ROOT, first_existing
from hpo.env import set_defaults
from trainers.data import open_text
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
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _stop_group(proc: subprocess.Popen, sig: signal.Signals, timeout: float = 30) -> None:
    """Stops a server started in its own session: ``sig`` to its process group, SIGKILL if it lingers."""
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """An S3-compatible server on 127.0.0.1 (`moto.server`, pip-installable; no AWS account can be reached
    here): real HTTP, the S3 API as pyarrow and Ray speak it. Yields ``host:port``."""
    port = _free_port()
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
        _stop_group(proc, signal.SIGTERM)
        log.close()


@contextmanager
def _mlflow_server(root: Path, backend_store_uri: str) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 over ``backend_store_uri``, artifacts proxied into ``root``."""
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        _stop_group(proc, signal.SIGTERM)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` with a SQLite store."""
    root = tmp_path_factory.mktemp("mlflow_server")
    with _mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        yield uri


@pytest.fixture(scope="module")
def mlflow_server_on_postgres(postgres_server, tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` whose backend store is a PostgreSQL database (as in docker/)."""
    store = _fresh_database(postgres_server, "mlflow_store")
    with _mlflow_server(tmp_path_factory.mktemp("mlflow_pg"), store) as uri:
        yield uri


def _postgres_bin() -> Path | None:
    """The folder of Debian's (or any) PostgreSQL server binaries, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


class PostgresServer:
    """A real PostgreSQL server on 127.0.0.1 in a throwaway data folder, which can be stopped and started again
    (a restart keeps its databases). As root, it runs as the `postgres` user (postgres refuses root)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir, self.user = bin_dir, {}
        self.data = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
        if os.geteuid() == 0:
            self.user = {"user": "postgres", "group": "postgres"}
            shutil.chown(self.data, "postgres", "postgres")
        subprocess.run([bin_dir / "initdb", "-D", self.data / "db", "-U", "hpo", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, **self.user)
        self.port, self.proc = _free_port(), None
        self.url = f"postgresql+psycopg://hpo@127.0.0.1:{self.port}"

    def start(self) -> None:
        import psycopg

        log = (self.data / "server.log").open("a")
        self.proc = subprocess.Popen(
            [self.bin_dir / "postgres", "-D", self.data / "db", "-h", "127.0.0.1", "-p", str(self.port), "-k",
             self.data, "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.user,
        )
        deadline = time.time() + 60
        while True:
            try:
                psycopg.connect(f"postgresql://hpo@127.0.0.1:{self.port}/postgres", connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"postgres did not start: {(self.data / 'server.log').read_text()[-2000:]}"
                                       ) from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _stop_group(self.proc, signal.SIGINT)  # postgres' fast shutdown: clients are disconnected

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A started server; skipped where none is installed, unless HPO_REQUIRE_POSTGRES=1 (set by .ci/run), which
    turns a missing server into a failure."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, postgres) not found; install Debian's `postgresql`"
        if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (see :class:`PostgresServer`); yields its base URL."""
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_db(postgres_server, request) -> str:
    """A fresh database on the PostgreSQL server for one test; its SQLAlchemy URL."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return _fresh_database(postgres_server, name)


def _fresh_database(server_url: str, name: str) -> str:
    """Creates database ``name`` (dropping one left over) on the server; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(server_url.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
