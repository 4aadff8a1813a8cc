"""No credential leaves hpo: a real sweep with a password in its PostgreSQL URL (registry and Optuna) and a
secret in its S3 checkpoint URL; neither may appear in what hpo prints, in the registry, or anywhere in MLflow
(params, tags, dataset inputs, every artifact's text), nor in `hpo status/best/report/ui`'s output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from mlflow import MlflowClient

from hpo.stores.registry import Registry
from tests.helpers.servers import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a whole study
PG_PASSWORD, S3_SECRET, S3_KEY_ID = "pg-Secr3t-42", "s3-Secr3t-99", "AKIDHPOTEST"
NAME = "secrets"


def _hpo(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})


def _artifact_texts(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    texts = []
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            texts += _artifact_texts(client, run_id, item.path)
        elif item.file_size and item.file_size < 5_000_000:
            local = client.download_artifacts(run_id, item.path)
            texts.append(Path(local).read_bytes().decode(errors="replace"))
    return texts


@pytest.fixture(scope="module")
def sweep(postgres_server, s3_endpoint, small_sst2, tiny_bert, tmp_path_factory):

    root = tmp_path_factory.mktemp("secrets")
    pg = fresh_database(postgres_server, "t_secrets").replace("://hpo@", f"://hpo:{PG_PASSWORD}@")
    pafs.S3FileSystem(access_key=S3_KEY_ID, secret_key=S3_SECRET, endpoint_override=s3_endpoint, scheme="http",
                      region="us-east-1", allow_bucket_creation=True).create_dir("hpo-secrets")
    bucket = (f"s3://{S3_KEY_ID}:{S3_SECRET}@hpo-secrets/runs?endpoint_override={s3_endpoint}&scheme=http"
              "&region=us-east-1")
    args = ["--registry", pg, "sweep", "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
            f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
            f"study.name={NAME}", "study.num_samples=2", "trainer.max_epochs=1", "scheduler=fifo",
            f"storage.root={root / 'runs'}", f"storage.optuna_url={pg}", f"storage.checkpoints='{bucket}'",
            "cluster.num_cpus=2"]
    proc = _hpo(args, cwd=root)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root, pg, proc


def _leaks(text: str) -> list[str]:
    return [s for s in (PG_PASSWORD, S3_SECRET, S3_KEY_ID) if s in text]


def test_nothing_printed_holds_a_credential(sweep):
    root, pg, proc = sweep
    assert _leaks(proc.stdout + proc.stderr) == []
    assert "hpo:***@" in proc.stdout, "the Optuna URL is shown, masked"
    for command in (["list"], ["status", NAME], ["best", NAME], ["report", NAME]):
        shown = _hpo(["--registry", pg, *command], cwd=root)
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert _leaks(shown.stdout + shown.stderr) == [], command


def test_the_registry_keeps_no_credential(sweep):
    _, pg, _ = sweep
    record = Registry.open(pg).require(NAME)
    assert _leaks(record.config_yaml) == [] and "***" in record.config_yaml
    assert _leaks(str(record.best_checkpoint)) == []


def test_mlflow_holds_no_credential_in_params_tags_inputs_or_artifacts(sweep):
    root, _, _ = sweep
    client = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    for run in runs:
        held = [str(run.data.params), str(run.data.tags), str(run.inputs), *_artifact_texts(client, run.info.run_id)]
        assert _leaks("\n".join(held)) == [], run.info.run_name
    versions = client.search_model_versions(f"name='{NAME}'")
    assert versions and all(_leaks(f"{v.source} {v.tags}") == [] for v in versions)
