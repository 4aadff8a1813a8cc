"""`hpo` as a user runs it: one parser (fast checks), then subprocesses with Hydra overrides."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli.main import _separate_pass_through, parser
from tests.helpers import bad_configs

HPO = [sys.executable, "-m", "hpo"]


def _parse(argv):
    args = parser().parse_args(_separate_pass_through(argv))
    return args


def test_global_options_go_before_any_subcommand_including_sweep():
    args = _parse(["--storage-root", "elsewhere", "sweep", "study.name=x"])
    assert (args.command, args.storage_root_given, args.overrides) == ("sweep", "elsewhere", ["--", "study.name=x"])


def test_hydra_flags_after_sweep_are_hydras():
    assert _parse(["sweep", "--cfg", "job"]).overrides == ["--", "--cfg", "job"]


def test_cli_defaults_come_from_conf():
    from omegaconf import OmegaConf

    from hpo.config.resolvers import CONFIG_DIR

    assert _parse(["list"]).stale_after_s == OmegaConf.load(CONFIG_DIR / "config.yaml").registry.stale_after_s


def test_an_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse(["sweeep"])
    assert exit_.value.code == 2 and "invalid choice: 'sweeep'" in capsys.readouterr().err


def _run(args, tmp_path, sst2_dir, timeout=600):
    env = {**os.environ, "HPO_DATA_DIR": str(sst2_dir)}
    return subprocess.run(
        HPO + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.integration
@pytest.mark.slow  # a whole study (the CLI's real process, on its own local Ray)
def test_sweep_with_overrides_runs_a_study(tmp_path, sst2_dir):
    """The console script's study on the local path: hpo starts its own Ray, here with the State API a study of DDP
    groups needs (each trial two gloo workers of one CPU: the local DDP path; tests/test_cluster.py has the
    multi-node one, with its kills)."""
    proc = _run([
        "--storage-root", "runs", "sweep", "experiment=sst2_minilm", "model=tiny_bert", "sampler=random",
        "scheduler=fifo", "study.num_samples=2", "study.name=cli_study", "data.train_limit=200",
        "data.validation_limit=100", "trainer.max_epochs=1", "cluster.num_cpus=2", "resources.workers_per_trial=2",
    ], tmp_path, sst2_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cluster: 1 node(s), room for 2 worker(s)" in proc.stdout and "1 trial(s) of 2 workers" in proc.stdout
    assert "=== study cli_study" in proc.stdout
    assert "trials: 2 completed" in proc.stdout
    # Piped, not a terminal: plain lines, one per event, no escape sequences (the live block is for terminals).
    assert "\x1b[" not in proc.stdout
    assert "[cli_study] trial 1 completed after 1 epoch(s), best val_accuracy=" in proc.stdout
    assert "2/2 trials (0 running, 2 completed, 0 pruned, 0 failed)" in proc.stdout
    assert (Path(tmp_path) / "runs" / "mlflow.db").is_file()
    assert (Path(tmp_path) / "runs" / "cli_study" / "optuna.db").is_file()
    listing = _run(["--storage-root", "runs", "list"], tmp_path, sst2_dir)
    assert listing.returncode == 0 and "cli_study  completed  2/2" in listing.stdout, listing.stdout


@pytest.mark.integration
def test_cfg_job_prints_the_composed_config(tmp_path, sst2_dir):
    proc = _run(["sweep", "experiment=sst2_minilm", "--cfg", "job"], tmp_path, sst2_dir)
    assert proc.returncode == 0, proc.stderr
    assert "name: sst2_minilm" in proc.stdout and "learning_rate:" in proc.stdout and "_target_:" in proc.stdout


@pytest.mark.integration
@pytest.mark.parametrize("case", ["negative lr", "missing model", "missing train file",
                                  "a registry URL of no database"])
def test_bad_value_stops_with_one_line_before_ray_starts(case, tmp_path, sst2_dir):
    """Four of tests/helpers/bad_configs.py's cases through a real `python -m hpo` (the rest run in-process in
    tests/reliability/test_bad_input.py)."""
    _, overrides, key = bad_configs.case(case)
    proc = _run(["sweep", "experiment=sst2_minilm", "storage.root=runs", *overrides], tmp_path, sst2_dir, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hpo: config error: {key}:"), proc.stderr
    assert "Ray" not in proc.stdout + proc.stderr and not (tmp_path / "runs").exists(), "nothing started or written"


@pytest.mark.integration  # three `python -m hpo` subprocesses
@pytest.mark.parametrize("command", [["list"], ["status", "x"], ["resume", "x"]])
def test_a_registry_url_of_no_database_is_one_line_for_every_command(command, tmp_path, sst2_dir):
    proc = _run(["--registry", "notaurl://u:pw@x/db", *command], tmp_path, sst2_dir, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "hpo: config error: --registry: notaurl://x/db: 'notaurl' is not a database SQLAlchemy knows; use e.g. "
        "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"]


def test_overrides_after_a_commands_flags_are_overrides_and_anything_else_is_refused():
    from hpo.cli.main import parse

    args = parse(["distill", "teach", "--student", "minilm_l6", "--with-plain", "study.num_samples=3", "a.b=1"])
    assert (args.name, args.student, args.with_plain, args.overrides) == \
        ("teach", "minilm_l6", True, ["study.num_samples=3", "a.b=1"])
    assert parse(["refit", "s", "--with-validation", "study.seed=1"]).overrides == ["study.seed=1"]
    with pytest.raises(SystemExit):
        parse(["refit", "s", "--with-validation", "--nonsense"])
