"""Whole studies of the non-default tasks through Ray, MLflow and the registry, one study per task shared by its
assertions: image classification (Fashion-MNIST images, MobileNetV2) and sentence-pair regression (STS-B, tiny
BERT): the stores agree, and export (with ONNX), predict and ensemble serve the task."""

from __future__ import annotations

import pytest

from hpo.config.resolvers import PROJECT_ROOT
from tests.helpers.lifecycle import hpo, study_counts
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
FASHION = PROJECT_ROOT / "data" / "fashion_mnist"
COMMON = ["study.num_samples=2", "study.max_concurrent=1", "scheduler=fifo", "trainer.max_epochs=2",
          "cluster.num_cpus=2", "search.first_trial=midpoint"]


def _study(root, sst2_dir, name: str, *overrides: str) -> dict:
    done = hpo(["sweep", *overrides, *COMMON, f"study.name={name}", f"storage.root={root}"], root, sst2_dir,
               timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_stores_agree(f"sqlite:///{root}/registry.db", f"sqlite:///{root}/mlflow.db", name)
    return study_counts(root, name)


@pytest.fixture(scope="module")
def image_study(tmp_path_factory, sst2_dir):
    root = tmp_path_factory.mktemp("images")
    return root, _study(root, sst2_dir, "fashion", "experiment=fashion_lite0", "model=mobilenet_v2",
                        "data.image_size=32", "data.train_limit=300", "data.validation_limit=100")


def test_an_image_study_records_every_trial_and_its_confusion_matrix(image_study):
    _, c = image_study
    assert c["record"].status == "completed" and 0.0 < c["record"].best_metric <= 1.0
    run = next(r for r in c["mlflow_children"] if r.data.tags["hpo.optuna_trial_number"] == "0")
    assert {"val_accuracy", "val_f1_macro", "train_loss"} <= set(run.data.metrics)
    artifacts = {a.path for a in c["client"].list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts


def test_an_image_model_exports_predicts_files_and_ensembles(image_study, sst2_dir):
    root, _ = image_study
    exported = hpo(["export", "fashion", "--to", str(root / "export"), "--onnx"], root, sst2_dir, timeout=600)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert {"model.safetensors", "config.json", "README.md", "model.onnx"} <= {p.name for p in (root / "export")
                                                                                .iterdir()}
    assert "pipeline_tag: image-classification" in (root / "export" / "README.md").read_text()
    bag = sorted((FASHION / "validation" / "Bag").iterdir())[0]
    predicted = hpo(["predict", "fashion", str(bag)], root, sst2_dir)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    header, row = predicted.stdout.strip().splitlines()[-2:]
    assert header.startswith("label\tp_Ankle_boot") and row.endswith(str(bag))
    ensembled = hpo(["ensemble", "fashion", "--top", "2"], root, sst2_dir, timeout=600)
    assert ensembled.returncode == 0 and "ensemble of 2: val_accuracy" in ensembled.stdout, ensembled.stderr[-2000:]


def test_a_pair_regression_study_exports_and_predicts_pairs(tmp_path, sst2_dir):
    c = _study(tmp_path, sst2_dir, "stsb", "experiment=stsb_minilm", "model=tiny_bert", "data.train_limit=200",
               "data.validation_limit=100")
    run = next(r for r in c["mlflow_children"] if r.data.tags["hpo.optuna_trial_number"] == "0")
    assert {"val_spearman", "val_pearson", "val_rmse", "val_mae"} <= set(run.data.metrics)
    artifacts = {a.path for a in c["client"].list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/predicted_vs_true.png" in artifacts
    exported = hpo(["export", "stsb", "--to", str(tmp_path / "export"), "--onnx"], tmp_path, sst2_dir, timeout=600)
    assert exported.returncode == 0 and "outputs within" in exported.stdout, exported.stderr[-3000:]
    predicted = hpo(["predict", "stsb", "A man plays a guitar.\tA man is playing music."], tmp_path, sst2_dir)
    assert predicted.returncode == 0 and predicted.stdout.splitlines()[0] == "score\tinput", predicted.stderr
    single = hpo(["predict", "stsb", "one text alone"], tmp_path, sst2_dir)
    assert single.returncode == 2 and "pairs of texts" in single.stderr
