"""Running a study's driver on the cluster as a Ray Job, so the study outlives the submitting shell.

``hpo launch OVERRIDES`` composes the config here (and validates it, unless the data or model only
exist on the cluster), then submits ``python -m hpo run study.yaml`` to the cluster's job server with
the composed config as the job's working dir and this checkout's ``hpo`` and ``trainers`` packages
as its ``py_modules``, so trials run the code you launched. Interpolations (``${oc.env:...}``,
the model's package path) resolve on the cluster. The driver joins the cluster it runs on
(``cluster.address=auto``) and records the job id in the registry, which ``hpo status``, ``hpo stop``
and ``hpo resume --launch`` use from anywhere that reaches the registry. Example::

    hpo launch experiment=sst2_minilm cluster=ray cluster.dashboard_url=http://head:8265 \\
        storage.root=/shared/hpo registry.url=postgresql+psycopg://hpo@db/hpo --follow
"""

from __future__ import annotations

import asyncio
import copy
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from ray.job_submission import JobSubmissionClient

from hpo.config.compose import build_spec
from hpo.config.resolvers import CONFIG_DIR, CONFIG_DIR_ENV
from hpo.errors import ConfigError
from hpo.secrets import is_uri

PACKAGES = [Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2] / "trainers"]
JOB_ID_ENV = "HPO_RAY_JOB_ID"  # the driver records it in the registry
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def launch_study(cfg: DictConfig, *, check_locally: bool = True) -> tuple[str, str]:
    """Submits a new study; returns (dashboard URL, job id). Raises ConfigError before submitting."""
    dashboard_url = _dashboard_url(cfg)
    for key in ("storage.root", "storage.checkpoints"):
        where = OmegaConf.select(cfg, key)
        if where is not None and not is_uri(str(where)) and not Path(str(where)).expanduser().is_absolute():
            raise ConfigError(key, f"{str(where)!r} is relative: a launched driver runs in a throwaway folder; "
                                   f"give a shared absolute path, e.g. {key}=/shared/hpo")
    cfg = copy.deepcopy(cfg)
    cfg.cluster.address = "auto"  # the driver joins the cluster it runs on
    if check_locally:
        build_spec(cfg)
    name = str(OmegaConf.select(cfg, "study.name"))
    with tempfile.TemporaryDirectory(prefix="hpo-launch-") as staging:
        (Path(staging) / "study.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=False))
        return dashboard_url, _submit(dashboard_url, name, "python -m hpo run study.yaml", staging)


def launch_resume(name: str, registry_url: str | None, storage_root: str, dashboard_url: str) -> str:
    """Submits ``hpo resume NAME`` as a job, with the registry as the study's driver saw it (the URL you
    reach it by from your shell may differ): the study continues on the cluster."""
    where = f"--storage-root {shlex.quote(storage_root)}"
    if registry_url:
        where += f" --registry {shlex.quote(registry_url)}"
    with tempfile.TemporaryDirectory(prefix="hpo-launch-") as staging:
        return _submit(dashboard_url, name, f"python -m hpo {where} resume {name}", staging)


def follow(dashboard_url: str, job_id: str, settle_s: float = 30.0) -> str:
    """Streams the job's log as the driver writes it, until the job ends; returns its final status.

    The job server's log tail (a websocket) sends only what is new, so following a study of hours
    costs nothing per poll; the stream closes when the job ends.
    """
    client = _client(dashboard_url)

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(stream())
    deadline = time.monotonic() + settle_s  # the stream can close a moment before the status is final
    while (status := str(client.get_job_status(job_id).value)) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


def _submit(dashboard_url: str, name: str, entrypoint: str, working_dir: str) -> str:
    """Submits ``entrypoint`` with ``working_dir`` (plus this checkout's conf/, which the CLI reads its
    defaults from) as the job's working dir and this checkout's packages as its code."""
    job_id = f"hpo-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copytree(CONFIG_DIR, Path(working_dir) / "conf")
    _client(dashboard_url).submit_job(
        entrypoint=entrypoint,
        submission_id=job_id,
        runtime_env={"working_dir": working_dir, "py_modules": [str(p) for p in PACKAGES],
                     "env_vars": {JOB_ID_ENV: job_id, CONFIG_DIR_ENV: "conf"}},
        metadata={"hpo.study": name},
        entrypoint_num_cpus=0,  # the driver only schedules; trials get the CPUs
    )
    return job_id


def _client(dashboard_url: str):
    return JobSubmissionClient(dashboard_url)


def _dashboard_url(cfg: DictConfig) -> str:
    url = OmegaConf.select(cfg, "cluster.dashboard_url")
    if not url:
        raise ConfigError("cluster.dashboard_url", "hpo launch submits to a running cluster's job server; "
                                                   "add cluster=ray cluster.dashboard_url=http://HEAD:8265")
    return str(url)
