"""What a user sees, on one real sweep run the way a user runs it: `hpo sweep` in a (pseudo-)terminal, then the
study's report, `hpo report`, `hpo ui` read by a real headless Chromium, `hpo export` (with ONNX) and `hpo predict`.

The sweep: tiny BERT on real SST-2 rows, 4 trials one at a time under ASHA, its own local Ray, MLflow and the
registry in SQLite under the study's storage root (what `hpo ui` serves).
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
import pytest
from mlflow import MlflowClient

from hpo.stores.registry import Registry
from tests.helpers.browser import chromium, runs_table
from tests.helpers.servers import free_port, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
NAME, TRIALS = "views", 4
HPO = [sys.executable, "-m", "hpo"]


def _sweep_args(root: Path, tiny_bert: Path, small_sst2: dict) -> list[str]:
    return ["--storage-root", str(root), "sweep", "model=hf", f"model.name_or_path={tiny_bert}", "data=csv",
            f"data.train_path={small_sst2['train']}", f"data.validation_path={small_sst2['dev']}",
            f"study.name={NAME}", f"study.num_samples={TRIALS}", "study.max_concurrent=1", "trainer.max_epochs=2",
            "cluster.num_cpus=2", "search.learning_rate.high=1e-2"]


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
    proc = subprocess.run(HPO + ["--storage-root", str(root), "report", NAME, "--to", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
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
    assert record.best_model_uri == f"models:/{NAME}/{champion.version}"
    assert float(champion.tags["hpo.value"]) == pytest.approx(record.best_metric)
    assert champion.tags["hpo.trial_number"] == str(record.best_trial_number)


def test_export_and_onnx_give_the_registered_models_predictions(study, small_sst2, tmp_path):
    import onnxruntime

    from trainers.csv_files import read_csv
    from trainers.tasks.text import TextPredictor

    root, _, _, _ = study
    out = tmp_path / "export"
    proc = subprocess.run(HPO + ["--storage-root", str(root), "export", NAME, "--to", str(out), "--onnx"],
                          capture_output=True, text=True, timeout=600)
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
    args = HPO + ["--storage-root", str(root), "predict", NAME]
    from_args = subprocess.run(args + ["a gorgeous film", "a dull mess"], capture_output=True, text=True, timeout=300)
    from_stdin = subprocess.run(args, input="a gorgeous film\na dull mess\n", capture_output=True, text=True,
                                timeout=300)
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
    proc = subprocess.run(HPO + ["--storage-root", str(root), "refit", NAME, "--with-validation"],
                          capture_output=True, text=True, timeout=600)
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
