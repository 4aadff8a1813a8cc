"""Real servers on 127.0.0.1 for tests, each started in its own process group and stopped by PID: a free port, an
`mlflow server`, a PostgreSQL server (Debian's binaries) with fresh databases."""

from __future__ import annotations

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

import psycopg
import pytest


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, sig: signal.Signals, timeout: float = 30) -> None:
    """Stops a server started in its own session: ``sig`` to its process group, SIGKILL if it lingers."""
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def mlflow_server(root: Path, backend_store_uri: str) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 over ``backend_store_uri``, artifacts proxied into ``root``."""
    port = free_port()
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
        stop_group(proc, signal.SIGTERM)
        log.close()


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that can be stopped and started again on the same port and store; with
    ``password``, MLflow's built-in authentication (``--app-name basic-auth``) with that admin password."""

    def __init__(self, root: Path, password: str | None = None, user: str = "admin") -> None:
        self.root, self.proc, self.user, self.password = root, None, user, password
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        if password is not None:  # MLflow reads its admin user, password and user database from this file
            (root / "auth.ini").write_text(
                f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'basic_auth.db'}\n"
                f"admin_username = {user}\nadmin_password = {password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            self.env |= {"MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
                         "MLFLOW_FLASK_SERVER_SECRET_KEY": "hpo-tests-csrf-key"}

    def uri_with(self, password: str) -> str:
        return f"http://{self.user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.root / f"server-{time.time_ns()}.log").open("w")
        auth = ["--app-name", "basic-auth"] if self.password is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", *auth, "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}", "--artifacts-destination",
             str(self.root / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not start: {Path(log.name).read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc, signal.SIGTERM)


def postgres_bin() -> Path | None:
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
        self.port, self.proc = free_port(), None
        self.url = f"postgresql+psycopg://hpo@127.0.0.1:{self.port}"

    def start(self) -> None:
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
            stop_group(self.proc, signal.SIGINT)  # postgres' fast shutdown: clients are disconnected

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A started server; skipped where none is installed, unless HPO_REQUIRE_POSTGRES=1 (set by .ci/run), which
    turns a missing server into a failure."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, postgres) not found; install Debian's `postgresql`"
        if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir)
    server.start()
    return server


def fresh_database(server_url: str, name: str) -> str:
    """Creates database ``name`` (dropping one left over) on the server; its SQLAlchemy URL."""
    with psycopg.connect(server_url.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
