"""A real multi-node Ray cluster on this machine: `ray start --head` plus `ray start --address` workers.

Each node is its own raylet with its own worker processes, exactly as on separate hosts, except that
all nodes share this machine's filesystem and IP address. Nodes advertise GPUs as *logical* resources
(``--num-gpus``): Ray schedules and packs trials by them, but no GPU exists and trials train on the CPU.
Every process the cluster starts is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.helpers.lifecycle import processes_with


@dataclass
class LocalCluster:
    root: Path
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]  # what a driver or client of this cluster runs with (its auth token included)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def get(self, path: str):
        """A JSON answer of the head's dashboard API, authenticated with the cluster's token."""
        request = urllib.request.Request(f"{self.dashboard_url}{path}",
                                         headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)

    def nodes(self) -> dict[str, dict]:
        """Alive node id -> its total resources."""
        answer = self.get("/api/v0/nodes?detail=1&limit=100")
        return {n["node_id"]: n["resources_total"] for n in answer["data"]["result"]["result"] if n["state"] == "ALIVE"}

    def head_node_id(self) -> str:
        return next(node for node, res in self.nodes().items() if "node:__internal_head__" in res)

    def worker_node_processes(self, marker: str) -> list[list[psutil.Process]]:
        """Per worker node (in start order), its processes whose command line holds ``marker``."""
        return [processes_with(_family(proc.pid), marker) for proc in self.procs[1:]]

    def stop(self) -> None:
        family: set[int] = set()
        for proc in self.procs:
            family |= _family(proc.pid)
        for proc in reversed(self.procs):  # workers first, the head last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 5  # a throwaway cluster: no need to wait out Ray's graceful shutdown
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.env["RAY_TMPDIR"], ignore_errors=True)


def _family(pid: int) -> set[int]:
    """The processes ``pid`` started, at any depth (none once it is gone)."""
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def ray_env(temp_dir: str) -> dict[str, str]:
    """The environment every node and driver shares: this venv's tools first on PATH, token auth on, and
    Ray's temp dir (sessions, logs, the "current cluster" file) of its own, so no later `ray.init()`
    on this machine mistakes this cluster for its own."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_TMPDIR": temp_dir,
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def start_cluster(root: Path, workers: list[dict[str, float]], head_cpus: int, free_port) -> LocalCluster:
    """A head (with its dashboard and job server) and one worker node per entry of ``workers``.

    Every node gets its own ports (nodes of one host would otherwise race for Ray's fixed defaults),
    from ``free_port``, which should hand out ports outside the kernel's ephemeral range: a port
    picked there can be taken by an outgoing connection before the node binds it.
    """
    port, dashboard_port = free_port(), free_port()
    ray = str(Path(sys.executable).parent / "ray")
    env = ray_env(tempfile.mkdtemp(prefix="hpo-ray-"))  # short: Ray's socket paths must fit 107 bytes
    def common() -> list[str]:
        ports = [(flag, str(free_port())) for flag in (
            "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")]
        return ["--block", "--disable-usage-stats", "--object-store-memory", str(300 * 1024**2),
                *[x for pair in ports for x in pair]]

    cluster = LocalCluster(root, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", env)
    log = (root / "head.log").open("w")
    cluster.procs.append(subprocess.Popen(
        [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", str(head_cpus), "--num-gpus", "0", "--include-dashboard", "true",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port), *common()],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True))
    try:
        _wait_for(lambda: _answers(cluster), 120, "the Ray head's dashboard", root)
        # One at a time: nodes of one host name their sockets first-come, and simultaneous starts collide.
        for i, resources in enumerate(workers):
            wlog = (root / f"worker{i}.log").open("w")
            cluster.procs.append(subprocess.Popen(
                [ray, "start", "--address", cluster.gcs_address, "--node-ip-address", "127.0.0.1",
                 "--num-cpus", str(int(resources["CPU"])), "--num-gpus", str(int(resources.get("GPU", 0))), *common()],
                stdout=wlog, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True))
            _wait_for(lambda n=i + 2: len(cluster.nodes()) == n, 120, f"worker node {i}", root)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _answers(cluster: LocalCluster) -> bool:
    try:
        cluster.nodes()
        return True
    except (OSError, KeyError, ValueError):
        return False


def _wait_for(check, timeout: float, what: str, root: Path) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            logs = "\n".join(p.read_text()[-1500:] for p in sorted(root.glob("*.log")))
            raise RuntimeError(f"{what} did not come up in {timeout:.0f}s:\n{logs}")
        time.sleep(1)
