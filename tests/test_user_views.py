"""The plain study, shared by every check that needs a whole study and no more: one real sweep run the way a user
runs it (`hpo sweep` in a (pseudo-)terminal), then what it recorded (one MLflow parent run and a nested run per
trial, the stores agreeing, ASHA's stops as PRUNED in Optuna, the best checkpoint, the registered model, storage.keep),
what a user reads (the study's report, `hpo report`, `hpo ui` in a real headless Chromium) and what leaves it
(`hpo export` with ONNX, `hpo predict`, `hpo refit`), each in file order (refit, which registers a second version,
last).

The sweep: tiny BERT on 300 real SST-2 rows, 5 trials of 3 epochs one at a time under ASHA (what ASHA sees, and so
which trials it stops, does not depend on timing), the sampler's own draws over a wide learning-rate range (some
trials are worse, so ASHA has something to stop), its own local Ray, MLflow and the registry in SQLite under the
study's storage root (what `hpo ui` serves).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hpo.stores.registry import Registry
from hpo.stores.tracking import STATUS_TAG, TRIAL_ID_TAG
from tests.helpers.browser import chromium, runs_table
from tests.helpers.lifecycle import hpo
from tests.helpers.servers import free_port, stop_group
from tests.helpers.stores import assert_stores_agree
from trainers.checkpoint import STATE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS, EPOCHS = "views", 5, 3
HPO = [sys.executable, "-m", "hpo"]


def _sweep_args(root: Path, tiny_bert: Path, small_sst2: dict) -> list[str]:
    return ["--storage-root", str(root), "sweep", "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
            f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
            f"study.name={NAME}", f"study.num_samples={TRIALS}", "study.max_concurrent=1",
            f"trainer.max_epochs={EPOCHS}", "scheduler=asha", "cluster.num_cpus=2", "search.learning_rate.high=1e-2",
            "search.first_trial=sampler"]


def run_in_terminal(argv: list[str], cwd: Path, timeout_s: float = 900) -> tuple[int, str]:
    """Runs ``argv`` with stdout and stderr on a pseudo-terminal (150 columns), as in a user's shell; returns its
    exit code and everything it wrote, escape sequences included."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "150", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                               start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        else:
            os.killpg(process.pid, signal.SIGKILL)
    finally:
        os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def study(tiny_bert, small_sst2, tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    code, output = run_in_terminal(HPO + _sweep_args(root / "runs", tiny_bert, small_sst2), cwd=root)
    assert code == 0, output[-4000:]
    registry = Registry.open(f"sqlite:///{root / 'runs' / 'registry.db'}")
    return root / "runs", output, registry, MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")


def test_the_live_progress_redraws_in_place_in_a_terminal(study):
    _, output, _, _ = study
    assert "\x1b[2K" in output or "\x1b[1A" in output, "no cursor movement: the status block was not redrawn"
    shown = {int(n) for n in re.findall(rf"(\d)/{TRIALS} trials", output)}
    assert {0, TRIALS} <= shown and len(shown) >= 3, f"the trial count did not move through the study: {shown}"
    assert re.search(r"ETA \d+:\d\d", output), "no ETA once epochs were reported"
    assert re.search(r"trial \d (completed|pruned) after \d epoch", output), "no line per finished trial"
    assert f"=== study {NAME}: completed" in output
    assert "Trial status" not in output and "Current time:" not in output, "Ray's own progress table is on"


def test_mlflow_has_one_parent_and_a_nested_run_per_trial(study):
    root, _, registry, client = study
    record = registry.require(NAME)
    runs = client.search_runs([record.mlflow_experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == record.mlflow_parent_run_id]
    assert len(parents) == 1 and len(runs) == 1 + TRIALS and len(children) == TRIALS
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == TRIALS
    for child in children:
        assert {"learning_rate", "batch_size", "freeze_depth", "weight_decay", "dropout"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert child.data.tags[STATUS_TAG] == ("completed" if len(history) == EPOCHS else "pruned")
        assert child.info.status == "FINISHED"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics[f"best_{record.metric}"] == pytest.approx(record.best_metric)
    best = registry.trial(NAME, record.best_trial_number)
    assert {f"best.{k}": str(v) for k, v in best.params.items()}.items() <= parent.data.tags.items()
    assert {"study_config.yaml", "search_space.json", "report"} <= {a.path for a in client.list_artifacts(
        parent.info.run_id)}


def test_the_three_stores_agree_and_optuna_learns_pruned_trials_as_pruned(study):
    root, _, registry, _ = study
    s = assert_stores_agree(f"sqlite:///{root / 'registry.db'}", f"sqlite:///{root / 'mlflow.db'}", NAME)
    assert len(s["optuna"]) == TRIALS
    pruned = [t for t in s["optuna"].values() if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "ASHA stopped no trial"
    assert all(len(t.intermediate_values) == s["registry"][t.number].epochs < EPOCHS for t in pruned)


def test_the_best_checkpoint_downloads_and_loads_with_from_pretrained(study, tmp_path):
    _, _, registry, client = study
    parent = client.get_run(registry.require(NAME).mlflow_parent_run_id)
    local = client.download_artifacts(parent.data.tags["hpo.best_run_id"], "checkpoint", str(tmp_path))
    model = AutoModelForSequenceClassification.from_pretrained(local)
    assert model.config.num_labels == 2 and AutoTokenizer.from_pretrained(local)("a fine film")["input_ids"]


def test_a_finished_study_keeps_only_models_and_metrics(study):
    """storage.keep=best: no trial keeps its resume state, and once the study has ended only the best trial keeps
    its model in checkpoint storage (every finished trial's is in its MLflow run)."""
    root, _, registry, _ = study
    tune = root / NAME / "tune"
    assert list(tune.rglob("result.json")) and not list(tune.rglob(STATE_FILE))
    best = registry.require(NAME).best_trial_number
    for trial in registry.trials(NAME):
        assert bool(list(Path(trial.ray_trial_dir).glob("checkpoint_*/best"))) == (trial.number == best), trial.number


def test_a_second_sweep_with_the_same_name_is_refused(study, tiny_bert, small_sst2):
    root, _, _, _ = study
    again = hpo(["--storage-root", str(root), *_sweep_args(root, tiny_bert, small_sst2)[2:]], root, root)
    assert again.returncode == 2 and "already exists" in again.stderr, again.stderr[-2000:]


def test_the_study_report_is_written_to_the_study_folder_and_to_mlflow(study):
    root, _, registry, client = study
    report = root / NAME / "report"
    for name in ("report.md", "report.html", "learning_curves.png", "optimization_history.png",
                 "param_importances.png", "parallel_coordinate.png", "slice.png"):
        assert (report / name).stat().st_size > 0, name
    markdown = (report / "report.md").read_text()
    best = registry.require(NAME)
    assert f"**{best.metric} = {best.best_metric:.4f}**" in markdown and "## Top " in markdown
    assert "early stopping saved" in markdown and "## Parameter importances" in markdown
    page = (report / "report.html").read_text()
    assert "<script src=" not in page and "cdn.plot.ly/plotly" not in page, "the HTML must open offline"
    assert page.count("Plotly.newPlot") >= 4
    logged = {a.path for a in client.list_artifacts(best.mlflow_parent_run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/learning_curves.png"} <= logged


def test_hpo_report_draws_it_again_into_a_folder(study, tmp_path):
    root, _, _, _ = study
    proc = hpo(["--storage-root", str(root), "report", NAME, "--to", str(tmp_path / "r")], root, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "r" / "report.md").read_text().startswith(f"# Study `{NAME}`")
    assert (tmp_path / "r" / "learning_curves.png").is_file()


def _printed_url(ui: subprocess.Popen) -> str:
    """The runs page `hpo ui` prints once its server answers."""
    printed = []
    for line in ui.stdout:
        printed.append(line)
        if found := re.search(r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\S*", line):
            return found.group(0)
    raise AssertionError(f"hpo ui printed no runs page: {''.join(printed)[-2000:]}")


def test_the_ui_opens_on_the_trials_with_their_metric_best_first(study, tmp_path, capsys):
    """What a user sees on arrival at the page `hpo ui` prints, without a click: every trial's run (not folded under
    the study's run), the study's metric as a column, best first."""
    root, _, registry, _ = study
    ui = subprocess.Popen(HPO + ["--storage-root", str(root), "ui", NAME, "--port", str(free_port())],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = _printed_url(ui)
        with chromium() as driver:
            driver.get(url)
            rows = runs_table(driver, "val_accuracy")
            driver.save_screenshot(str(tmp_path / "mlflow_runs.png"))
    finally:
        stop_group(ui, signal.SIGTERM)
    trials = {f"trial_{t.number:04d}": t for t in registry.trials(NAME)}
    with capsys.disabled():  # in CI's log: what the browser saw
        print(f"\n[browser test] on arrival Chromium saw {len(rows)} rows, top to bottom: {rows}; "
              f"screenshot {tmp_path / 'mlflow_runs.png'}")
    assert [name for name, _ in rows if name.startswith("trial_")] == [name for name, _ in rows], rows
    assert {name for name, _ in rows} == set(trials), "every trial's run, flat, and nothing else"
    for name, value in rows:
        assert float(value) == pytest.approx(trials[name].last_metric, abs=1e-6), name
    values = [float(value) for _, value in rows]
    assert values == sorted(values, reverse=True), "best first"
    assert (tmp_path / "mlflow_runs.png").stat().st_size > 10_000


def test_the_champion_alias_points_at_the_best_trials_registered_model(study):
    _, _, registry, client = study
    record = registry.require(NAME)
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1" and champion.run_id == record.mlflow_parent_run_id, "the study's run, once"
    assert record.best_model_uri == f"models:/{NAME}/{champion.version}"
    assert float(champion.tags["hpo.value"]) == pytest.approx(record.best_metric)
    assert champion.tags["hpo.trial_number"] == str(record.best_trial_number)


def test_export_and_onnx_give_the_registered_models_predictions(study, small_sst2, tmp_path):
    import onnxruntime

    from trainers.csv_files import read_csv
    from trainers.tasks.text import TextPredictor

    root, _, _, _ = study
    out = tmp_path / "export"
    proc = hpo(["--storage-root", str(root), "export", NAME, "--to", str(out), "--onnx"], root, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "model.onnx"} <= {
        p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert card.startswith("---\npipeline_tag: text-classification") and "## Hyperparameters" in card

    texts = read_csv(small_sst2["dev"])[0]
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    registered = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(texts)
    predictor = TextPredictor(out)
    exported = predictor(texts)[[c for c in registered.columns if c.startswith("p_")]].to_numpy()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = predictor.encode(texts, tensors="np")
    logits = session.run(["logits"], {k: batch[k].astype("int64") for k in predictor.input_names})[0]
    onnx = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = registered[[c for c in registered.columns if c.startswith("p_")]].to_numpy()
    assert np.abs(exported - expected).max() < 1e-6
    assert np.abs(onnx - expected).max() < 1e-4
    labels = [predictor.classifier.config.id2label[i] for i in onnx.argmax(-1)]
    assert labels == registered["label"].tolist()


def test_predict_reads_texts_from_arguments_and_stdin(study):
    root, _, _, _ = study
    args = ["--storage-root", str(root), "predict", NAME]
    from_args = hpo([*args, "a gorgeous film", "a dull mess"], root, root)
    from_stdin = hpo(args, root, root, stdin="a gorgeous film\na dull mess\n")
    assert from_args.returncode == 0, from_args.stderr[-2000:]
    rows = from_args.stdout.strip().splitlines()
    assert rows[0].split("\t") == ["label", "p_0", "p_1", "input"] and len(rows) == 3
    assert rows[1].endswith("\ta gorgeous film")
    assert sum(float(p) for p in rows[1].split("\t")[1:3]) == pytest.approx(1.0, abs=1e-3)
    assert from_stdin.stdout == from_args.stdout


def test_each_run_records_the_data_it_was_trained_and_validated_on(study):
    _, _, registry, client = study
    record = registry.require(NAME)
    for run_id in (record.mlflow_parent_run_id, registry.trials(NAME)[0].mlflow_run_id):
        inputs = {i.tags[0].value: i.dataset for i in client.get_run(run_id).inputs.dataset_inputs}
        assert set(inputs) == {"train", "validation"}, run_id
        assert (inputs["train"].name, inputs["validation"].name) == ("train.csv", "dev.csv")
        train, validation = json.loads(inputs["train"].profile), json.loads(inputs["validation"].profile)
        assert (train["num_rows"], validation["num_rows"]) == (300, 100)
        assert sum(train["label_counts"].values()) == 300 and set(train["label_counts"]) == {"0", "1"}


def test_refit_trains_the_best_config_for_its_best_epochs_and_registers_the_next_version(study):
    root, _, registry, client = study
    record = registry.require(NAME)
    before = client.get_model_version_by_alias(NAME, "champion").version
    proc = hpo(["--storage-root", str(root), "refit", NAME, "--with-validation"], root, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    refit = client.get_model_version_by_alias(NAME, "refit")
    assert int(refit.version) == int(before) + 1 and refit.tags["hpo.kind"] == "refit"
    assert client.get_model_version_by_alias(NAME, "champion").version == before, "a refit never takes champion"
    run = client.get_run(refit.run_id)
    assert run.info.experiment_id == record.mlflow_experiment_id and "mlflow.parentRunId" not in run.data.tags
    assert run.data.tags["hpo.refit_of_trial"] == str(record.best_trial_number)
    assert run.data.tags["hpo.validation_held_out"] == "False"
    best = registry.trial(NAME, record.best_trial_number)
    epochs = min(e for e, v in best.values.items() if v == best.best_metric)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, epochs + 1))
    rows = sum(json.loads(i.dataset.profile)["num_rows"] for i in run.inputs.dataset_inputs)
    assert rows == 400, "training + validation rows"
