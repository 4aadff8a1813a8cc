"""Studies on a real multi-node Ray cluster: a head and two worker nodes started with `ray start`.

GPU capacity is logical here: each worker node advertises one GPU as a Ray resource (`--num-gpus 1`)
and the head none, so Ray places and packs trials exactly as on a GPU cluster, but no GPU exists and
trials train on the CPU. Storage is a folder every node sees (as a shared filesystem would be),
tracking goes over HTTP to a real `mlflow server` whose store is PostgreSQL (as in docker/), and the
registry and Optuna live on PostgreSQL too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from hpo.config.resolvers import first_existing
from hpo.result_keys import NODE_KEY
from hpo.stores.registry import Registry, StudyRecord
from hpo.stores.tracking import NODE_TAG, STATUS_TAG
from tests.helpers.lifecycle import hpo
from tests.helpers.polling import until
from tests.helpers.raycluster import LocalCluster, start_cluster
from tests.helpers.stores import assert_stores_agree

WORKERS = [{"CPU": 2, "GPU": 1}, {"CPU": 2, "GPU": 1}]
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies


def _listen_port() -> int:
    """A free port below the ephemeral range (32768+), where outgoing connections never land."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> LocalCluster:
    root = tmp_path_factory.mktemp("ray_cluster")
    cluster = start_cluster(root, WORKERS, head_cpus=1, free_port=_listen_port)
    yield cluster
    cluster.stop()


def _overrides(name: str, small_sst2, tiny_bert, tracking_uri: str, pg: str, root: Path, *extra: str) -> list[str]:
    return [
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", f"study.name={name}", "scheduler=fifo",
        "search.learning_rate.high=1e-3", f"tracking.uri={tracking_uri}", f"registry.url={pg}",
        f"storage.optuna_url={pg}", f"storage.root={root}", "cluster=ray", *extra,
    ]


def _hpo(args: list[str], cluster: LocalCluster, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo", *args], env=cluster.env, cwd=cluster.root,
                          capture_output=True, text=True, timeout=timeout)


def test_fractional_gpus_pack_two_trials_per_worker_node(cluster, small_sst2, tiny_bert, mlflow_server_on_postgres,
                                                         postgres_db, tmp_path):
    name, trials = "packed", 6
    sweep = _hpo(["sweep", *_overrides(
        name, small_sst2, tiny_bert, mlflow_server_on_postgres, postgres_db, tmp_path / "shared",
        f"study.num_samples={trials}", "trainer.max_epochs=1", "resources.cpu=0.5", "resources.gpu=0.5",
        f"cluster.address={cluster.gcs_address}")], cluster)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    # max_concurrent was left to the cluster: two workers x (1 GPU / 0.5) = 4; the GPU-less head holds none.
    assert "3 node(s), room for 4 trial(s)" in sweep.stdout

    client = MlflowClient(mlflow_server_on_postgres)
    experiment = client.get_experiment_by_name(name)
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == trials
    workers = set(cluster.nodes()) - {cluster.head_node_id()}
    for run in runs:
        node = run.data.tags[NODE_TAG]
        assert node in workers, f"trial ran on {node}, not on a worker node"
        # The checkpoint written on the worker node reached MLflow, and loads.
        assert run.data.tags[STATUS_TAG] == "completed"
        assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")} >= {
            "checkpoint/config.json", "checkpoint/model.safetensors"}
    # Where each trial ran and in which worker process, as Ray recorded it on the shared storage. A trial runs in an
    # actor that holds its 0.5 GPU for the actor's whole life (hpo reuses actors across trials), so no more than two
    # actors per node means never three trials on one node's GPU. (Timestamps cannot show it: Ray's are whole
    # seconds, trials here last one, and an MLflow run's span is the driver's bookkeeping, which outlasts them.)
    actors: dict[str, set[int]] = defaultdict(set)
    for results in (tmp_path / "shared" / name / "tune").glob("attempt_*/trial_*/result.json"):
        last = json.loads(results.read_text().splitlines()[-1])
        actors[last[NODE_KEY]].add(last["pid"])
    assert set(actors) == workers, "both worker nodes ran trials"
    assert max(len(pids) for pids in actors.values()) <= 2, actors
    assert client.search_model_versions(f"name='{name}'"), "the study's best model was registered"

    registry = Registry.open(postgres_db)
    assert [t.state for t in registry.trials(name)] == ["completed"] * trials
    study = optuna.load_study(study_name=name, storage=postgres_db)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * trials
    assert_stores_agree(postgres_db, mlflow_server_on_postgres, name)


def test_a_ddp_study_spans_the_two_worker_nodes_prunes_and_survives_a_killed_worker_and_driver(
        cluster, sst2_dir, small_sst2, tiny_bert, mlflow_server_on_postgres, postgres_db, tmp_path):
    """The DDP story. ``resources.workers_per_trial=2`` with 2 CPUs per worker: each worker node holds one worker
    (the head, with 1 CPU, none), so every trial's group spans both nodes, its gradients all-reduced over gloo
    between them. The four trials are a portfolio of the test's own (``search.portfolio_file``), so what ASHA stops
    is certain, not a draw: two good learning rates, then 0.3 (which diverges: its first epoch's validation loss is
    0.77-1.1 where the good ones' is 0.695), then a good one. In order:

    1. a Train worker SIGKILLed on the second node in trial 0's epoch 2 is restarted by Ray Train with its group
       from the trial's checkpoint, once;
    2. the driver SIGKILLed after that (its Ray job ends with it), and `hpo resume` continues trial 0 from its
       checkpoint (Ray Train runs ahead of the driver: it may hold epochs the driver never recorded);
    3. ASHA on the validation loss (tiny BERT's accuracy ties at the majority class) stops trial 2 at its first
       rung, against trial 1, and trial 3's group gets the stopped group's workers on both nodes;
    4. the three stores agree, and every epoch of every trial was trained and recorded once."""
    name, learning_rates = "spanning", [1e-3, 2e-3, 0.3, 1.5e-3]
    trials = len(learning_rates)
    portfolio = tmp_path / "portfolio.json"
    portfolio.write_text(json.dumps({"portfolio": {"text": [
        {"learning_rate": lr, "batch_size": 16, "freeze_depth": 0} for lr in learning_rates]}}))
    full_train = first_existing(str(sst2_dir / "train.csv"), str(sst2_dir / "train.csv.gz"))
    overrides = [o for o in _overrides(
        name, {**small_sst2, "train": full_train}, tiny_bert, mlflow_server_on_postgres, postgres_db,
        tmp_path / "shared", "data.train_limit=600", "data.validation_limit=100", f"study.num_samples={trials}",
        "trainer.max_epochs=4", "scheduler=asha", "study.metric=val_loss", "study.mode=min",
        f"search.portfolio_file={portfolio}", "resources.cpu=2", "resources.workers_per_trial=2",
        f"cluster.address={cluster.gcs_address}", f"cluster.dashboard_url={cluster.dashboard_url}")
    ] + ["search.learning_rate.high=0.5"]  # replaces _overrides' 1e-3: the portfolio's 0.3 stays as written
    overrides.remove("search.learning_rate.high=1e-3")
    registry = Registry.open(postgres_db)

    def driver(*args: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"driver-{len(list(tmp_path.glob('driver-*.log')))}.log"
        with log.open("w") as out:
            return subprocess.Popen([sys.executable, "-m", "hpo", *args], env=cluster.env, cwd=cluster.root,
                                    stdout=out, stderr=subprocess.STDOUT), log

    def trial_0(proc: subprocess.Popen, log: Path, epochs: int) -> None:
        def past() -> bool:
            assert proc.poll() is None, f"the driver ended early:\n{log.read_text()[-3000:]}"
            ts = registry.trials(name)
            return bool(ts) and ts[0].state == "running" and ts[0].epochs >= epochs
        until(past, 300, lambda: log.read_text()[-3000:], every_s=0.5)

    sweep, log = driver("sweep", *overrides)
    resume: subprocess.Popen | None = None
    try:
        trial_0(sweep, log, 1)
        first_node, second_node = cluster.worker_node_processes("RayTrainWorker")
        assert len(first_node) == len(second_node) == 1, "1: the group's two workers, one on each worker node"
        os.kill(second_node[0].pid, signal.SIGKILL)
        trial_0(sweep, log, 2)
        sweep.kill()
        sweep.wait()
        assert "trial 0: a worker of its group died; Ray Train restarted the group after epoch" in log.read_text()

        resume, resume_log = driver("--registry", postgres_db, "resume", name)
        assert resume.wait(timeout=900) == 0, f"2: the resume:\n{resume_log.read_text()[-3000:]}"
    finally:
        for proc in (sweep, resume):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log.read_text() + resume_log.read_text()
    assert "3 node(s), room for 2 worker(s)" in output and "1 trial(s) of 2 workers" in output
    assert "trial 0 resumed after epoch" in resume_log.read_text(), "2: trial 0 went on from its checkpoint"
    s = assert_stores_agree(postgres_db, mlflow_server_on_postgres, name)
    states = {n: t.state for n, t in s["registry"].items()}
    assert [s["registry"][n].params["learning_rate"] for n in range(trials)] == learning_rates, "the portfolio's order"
    assert len(states) == trials and states[2] == "pruned" and s["registry"][2].epochs == 1, f"3: {states}"
    assert states[3] in ("completed", "pruned") and s["registry"][3].epochs >= 1, (
        "3: the group after the stopped one got its workers")
    assert s["registry"][0].state == "completed" and s["registry"][0].epochs == 4, (
        "2: trial 0 went on after its worker and its driver died")
    client = MlflowClient(mlflow_server_on_postgres)
    for number, trial in s["registry"].items():
        steps = sorted(m.step for m in client.get_metric_history(s["mlflow"][number].info.run_id, "train_loss"))
        assert steps == list(range(1, trial.epochs + 1)), f"4: trial {number}: each epoch trained and recorded once"
    print(f"[ddp on two nodes] {sorted(t.value for t in states.values())}")


def _poll_registry(url: str, name: str, condition, cluster: LocalCluster, job_id: str,
                   timeout: float = 240) -> StudyRecord:
    registry = Registry.open(url)

    def probe() -> StudyRecord | None:
        record = registry.get(name)
        return record if record is not None and condition(registry.trials(name)) else None

    def failure() -> str:
        logs = cluster.get(f"/api/jobs/{job_id}/logs").get("logs", "")[-4000:]
        return f"study {name}: {registry.get(name)}; job {job_id}'s log:\n{logs}"

    return until(probe, timeout, failure, every_s=0.5)


def test_launch_stop_and_resume_a_study_on_the_cluster(cluster, sst2_dir, small_sst2, tiny_bert,
                                                       mlflow_server_on_postgres, postgres_db, tmp_path):
    """`hpo launch` runs the driver as a Ray Job through the head's job server; `hpo stop` from this shell
    ends it gracefully; `hpo resume --launch --follow` continues it in a second job until it completes;
    `hpo status` shows it all through the PostgreSQL registry.

    One trial at a time, 2 trials of 8 epochs on 300 rows: when the stop is sent (trial 0 past epoch 1, `hpo stop`
    in this process: no imports to wait for) at least 7 epochs of trial 0 are left, many times what the stop takes
    to land (the driver reads it every registry.heartbeat_s=1), so trial 0 is still running when it does.
    """
    name, trials = "relaunched", 2
    full_train = first_existing(str(sst2_dir / "train.csv"), str(sst2_dir / "train.csv.gz"))
    overrides = _overrides(
        name, {**small_sst2, "train": full_train}, tiny_bert, mlflow_server_on_postgres, postgres_db,
        tmp_path / "shared", "data.train_limit=300", f"study.num_samples={trials}", "study.max_concurrent=1",
        "trainer.max_epochs=8", "registry.heartbeat_s=1", "resources.cpu=1", "resources.gpu=1",
        f"cluster.dashboard_url={cluster.dashboard_url}")
    launched = _hpo(["launch", *overrides], cluster)
    assert launched.returncode == 0, launched.stderr[-3000:]
    first_job = launched.stdout.split("as Ray job ", 1)[1].split()[0]
    running = _poll_registry(postgres_db, name, lambda ts: any(t.state == "running" and t.epochs >= 1 for t in ts),
                             cluster, first_job)
    assert running.ray_job_id == first_job and running.status == "running"

    stop = hpo(["--registry", postgres_db, "stop", name, "--wait", "120"], tmp_path, sst2_dir)
    assert stop.returncode == 0 and f"{name}: stopped" in stop.stdout, stop.stdout + stop.stderr
    at_stop = Registry.open(postgres_db).trials(name)
    completed_by_first_job = [t.number for t in at_stop if t.state == "completed"]
    assert len(completed_by_first_job) < trials, "the stop landed mid-study"
    assert at_stop[0].state == "interrupted", "the stop landed mid-trial: trial 0 interrupted, resumed later"

    resumed = _hpo(["--registry", postgres_db, "resume", name, "--launch", "--follow"], cluster)  # its dashboard_url
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    job_id = resumed.stdout.split("as Ray job ", 1)[1].split()[0]
    assert "resuming:" in resumed.stdout and resumed.stdout.rstrip().endswith(f"job {job_id}: SUCCEEDED"), (
        "--follow streamed the resumed driver's log")
    for job in (first_job, job_id):  # the job server's own record of both drivers
        answer = cluster.get(f"/api/jobs/{job}")
        assert answer["status"] == "SUCCEEDED" and answer["metadata"]["hpo.study"] == name

    status = hpo(["--registry", postgres_db, "status", name], tmp_path, sst2_dir)
    assert status.returncode == 0, status.stderr
    assert f"study {name}: completed" in status.stdout and f"Ray job: {job_id}" in status.stdout
    assert [t.state for t in Registry.open(postgres_db).trials(name)] == ["completed"] * trials
    client = MlflowClient(mlflow_server_on_postgres)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert len(runs) == trials + 1, "one run per trial and the study's run, reused across the two jobs"
    assert_stores_agree(postgres_db, mlflow_server_on_postgres, name)
    print(f"[launch/stop/resume] {len(completed_by_first_job)} of {trials} trials completed before the stop")
