"""The docker/ stack, checked without a Docker engine (none runs here): the compose file by Compose
itself when `docker compose` or Debian's `docker-compose` is installed, its services' wiring, the
Dockerfile's structure, and the cluster-launcher YAML against Ray's own schema."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hpo.config.resolvers import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
SECRETS = {"RAY_AUTH_TOKEN": "test-token", "POSTGRES_PASSWORD": "test-password"}
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    return subprocess.run([*command, "-f", str(DOCKER / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=PROJECT_ROOT, timeout=120)


def test_compose_validates_with_compose_itself():
    result = _compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert {"postgres", "mlflow", "ray-head", "ray-gpu-worker"} <= set(config["services"])


def test_compose_refuses_to_start_without_its_secrets():
    result = _compose_config({k: "" for k in SECRETS} | {"POSTGRES_PASSWORD": "x"})
    assert result.returncode != 0 and "RAY_AUTH_TOKEN" in result.stderr


def test_compose_wires_a_gpu_worker_mlflow_on_postgres_and_shared_storage():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    devices = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--address=ray-head:6379" in services["ray-gpu-worker"]["command"]
    assert "--num-gpus=0" in services["ray-head"]["command"]  # trials go to GPU workers
    mlflow = services["mlflow"]
    assert "--backend-store-uri postgresql+psycopg://" in mlflow["command"]
    assert "--artifacts-destination /mlartifacts" in mlflow["command"]
    assert "mlartifacts:/mlartifacts" in mlflow["volumes"]
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    for node in ("ray-head", "ray-gpu-worker"):
        assert "shared:/shared" in services[node]["volumes"]  # storage.root, seen by every node
    assert "CREATE DATABASE mlflow" in (DOCKER / "postgres-init.sql").read_text()


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_structure():
    steps = _instructions(DOCKER / "Dockerfile")
    assert {keyword for keyword, _ in steps} <= INSTRUCTIONS
    keywords = [k for k, _ in steps if k != "ARG"]
    assert keywords[0] == "FROM"
    base = dict(steps)["FROM"]
    assert ":" in base and not base.endswith(":latest"), "pin the base image"
    for keyword, args in steps:
        if keyword in ("COPY", "ADD"):
            sources = [a for a in args.split()[:-1] if not a.startswith("--")]
            assert all((PROJECT_ROOT / s).exists() for s in sources), f"{keyword} {args}: missing in the repo"
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    torch_pin = re.search(r'"(torch==[\d.]+)"', (PROJECT_ROOT / "pyproject.toml").read_text()).group(1)
    assert torch_pin in runs, "the image installs the torch that pyproject pins"
    assert runs.index(torch_pin) < runs.index('pip install ".[postgres]"'), "torch first, then the stack"
    user = [args for keyword, args in steps if keyword == "USER"]
    assert user and user[-1] not in ("root", "0"), "trials run as a non-root user"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN"), "USER after the installs"
    assert {"CMD", "HEALTHCHECK"} <= set(keywords)


def test_cluster_launcher_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DOCKER / "ray-cluster-aws.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["available_node_types"]["head"]["resources"]["GPU"] == 0
    assert any("/shared" in option for option in config["docker"]["run_options"])
