"""`hpo` as a user runs it: a subprocess with Hydra overrides."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HPO = [sys.executable, "-m", "hpo"]


def _run(args, tmp_path, sst2_dir, timeout=600):
    env = {**os.environ, "HPO_DATA_DIR": str(sst2_dir)}
    return subprocess.run(
        HPO + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_sweep_with_overrides_runs_a_study(tmp_path, sst2_dir):
    proc = _run([
        "sweep", "experiment=sst2_minilm", "model=tiny_bert", "sampler=random", "scheduler=fifo",
        "study.num_samples=2", "study.name=cli_study", "data.train_limit=200", "data.validation_limit=100",
        "trainer.max_epochs=1", "storage.root=runs", "cluster.num_cpus=2",
    ], tmp_path, sst2_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "=== study cli_study" in proc.stdout
    assert "trials: 2 completed" in proc.stdout
    assert (Path(tmp_path) / "runs" / "mlflow.db").is_file()
    assert (Path(tmp_path) / "runs" / "cli_study" / "optuna.db").is_file()


def test_cfg_job_prints_the_composed_config(tmp_path, sst2_dir):
    proc = _run(["sweep", "experiment=sst2_minilm", "--cfg", "job"], tmp_path, sst2_dir)
    assert proc.returncode == 0, proc.stderr
    assert "name: sst2_minilm" in proc.stdout and "learning_rate:" in proc.stdout and "_target_:" in proc.stdout


@pytest.mark.parametrize(
    "override, key",
    [
        ("search.learning_rate.low=-1", "search.learning_rate.low"),
        ("model.name_or_path=/nope", "model.name_or_path"),
        ("data.train_path=missing.csv", "data.train_path"),
    ],
)
def test_bad_value_stops_with_one_line_before_ray_starts(override, key, tmp_path, sst2_dir):
    started = time.time()
    proc = _run(["sweep", "experiment=sst2_minilm", "storage.root=runs", override], tmp_path, sst2_dir, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hpo: config error: {key}:"), proc.stderr
    assert "Ray" not in proc.stdout + proc.stderr and not (tmp_path / "runs" / "mlflow.db").exists()
    assert time.time() - started < 60
