"""``distill.teacher``: a registered model's outputs on a study's training rows, computed once (a real `mlflow
server`, a tiny BERT trained here as the teacher), cached, put on every trial's rows; a teacher that does not exist
or answers another task is refused by key before anything runs."""

from __future__ import annotations

import pytest
import torch

from hpo import ConfigError, Registry, build_spec, compose
from hpo.config.model_check import ensure_model
from hpo.inference import EnsembleModel
from hpo.models.distill import distill_config
from hpo.stores.tracking import client as tracking_client
from hpo.stores.tracking import log_fine_tuned, log_pyfunc
from hpo.study.data import prepare_study_data
from hpo.study.teacher import with_teacher
from trainers import ConsoleReporter, TrainConfig, fine_tune, load_model
from trainers.loop import predict


@pytest.fixture(scope="module")
def registered_teacher(mlflow_server, tmp_path_factory):
    """A tiny BERT fine-tuned for one epoch on the study's rows, registered as ``teacher_sst2`` with alias
    champion: what a finished study leaves behind."""
    root = tmp_path_factory.mktemp("teacher")
    spec = study_spec(root, mlflow_server, "distill.teacher=null")
    ensure_model(spec.model)  # as a study does: the tiny BERT is built on first use
    data = prepare_study_data(spec, log=lambda _: None)
    fine_tune(TrainConfig(model_name_or_path=spec.model.name_or_path, max_epochs=1, learning_rate=1e-3,
                          num_threads=1), data, ConsoleReporter(keep_dir=root / "model"))
    client = tracking_client(mlflow_server)
    run = client.create_run(client.create_experiment("teacher_sst2"))
    _, version = log_fine_tuned(mlflow_server, run.info.run_id, root / "model", "teacher_sst2",
                                "text_classification")
    client.set_registered_model_alias("teacher_sst2", "champion", version)
    return root


def study_spec(root, tracking_uri, *overrides):
    return build_spec(compose(["study.name=student", "model=tiny_bert", f"storage.root={root}",
                               f"tracking.uri={tracking_uri}", "data.train_limit=120", "data.validation_limit=40",
                               *overrides]))


@pytest.mark.integration
def test_the_teachers_outputs_are_computed_once_and_put_on_the_training_rows(registered_teacher, mlflow_server,
                                                                            tmp_path):
    spec = study_spec(registered_teacher, mlflow_server, "distill.teacher=teacher_sst2")
    assert spec.distill.teacher == "models:/teacher_sst2@champion"
    data = prepare_study_data(spec, log=lambda _: None)
    said = []
    first, again = (with_teacher(spec, data, said.append) for _ in range(2))
    # a tiny BERT teaching a tiny BERT: first the warning that the student is not smaller, once
    assert "not much smaller" in said[0] and "computed and cached" in said[1] and "read from the cache" in said[2], said
    # the teacher is a tiny BERT too, so it reads the rows as the student does
    expected, _ = predict(load_model(registered_teacher / "model"), data.train, data.pad_token_id, 64,
                          torch.device("cpu"))
    assert torch.tensor(first.train.teacher) == pytest.approx(expected, abs=1e-5)
    assert first.train.teacher == again.train.teacher and data.train.teacher is None


@pytest.mark.integration
def test_a_missing_or_mismatched_teacher_is_refused_by_key(registered_teacher, mlflow_server):
    missing = study_spec(registered_teacher, mlflow_server, "distill.teacher=models:/nobody@champion")
    data = prepare_study_data(missing, log=lambda _: None)
    with pytest.raises(ConfigError) as err:
        with_teacher(missing, data)
    assert err.value.key == "distill.teacher" and "teacher_sst2" in err.value.message

    regression = study_spec(registered_teacher, mlflow_server, "task=text_regression", "data=stsb",
                            "distill.teacher=teacher_sst2")
    with pytest.raises(ConfigError) as err:
        with_teacher(regression, prepare_study_data(regression, log=lambda _: None))
    assert err.value.key == "distill.teacher" and "same task" in err.value.message


@pytest.mark.parametrize("teacher", ["models:/x", "models:/x@/2", ""])
def test_a_teacher_uri_that_names_no_version_is_refused(teacher, tmp_path):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", f"distill.teacher='{teacher}'"]))
    assert err.value.key == "distill.teacher"


def test_searching_a_distillation_setting_without_a_teacher_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}",
                            "+search.distill_alpha={low: 0.1, high: 0.9}"]))
    assert err.value.key == "search.distill_alpha" and "distill.teacher=" in err.value.message


def teacher_record(root, *overrides):
    """A teacher study as the registry stores it (what ``hpo distill`` starts from)."""
    spec = build_spec(compose(["study.name=teach", "model=tiny_bert", f"storage.root={root}", *overrides]))
    registry = Registry.open(f"sqlite:///{root}/registry.db")
    registry.create(spec.name, spec.config_yaml, spec.study.num_samples, "val_accuracy", "max")
    return registry.require(spec.name)


def test_hpo_distill_composes_the_students_study_from_the_teachers(tmp_path):
    teacher = teacher_record(tmp_path, "search=models", "search.model={choices: [tiny_bert, minilm_l6]}",
                             "data.train_limit=321")
    spec = build_spec(distill_config(teacher, "tiny_bert", overrides=["study.num_samples=5"]))
    assert spec.name == "teach-distilled-tiny_bert" and spec.distill.teacher == "models:/teach@champion"
    assert spec.models == {} and "model" not in spec.space.distributions, "the student is one model"
    assert spec.study.first_trial == "portfolio" and spec.study.num_samples == 5
    assert {"distill_temperature", "distill_alpha"} <= set(spec.space.distributions), "searched by default"
    assert spec.data.train_limit == 321 and spec.model.name_or_path.endswith("tiny_bert")
    reseeded = build_spec(distill_config(teacher, "tiny_bert", overrides=["study.seed=7"]))
    assert reseeded.sampler.kwargs["seed"] == 7, "the sampler follows the student study's seed, not the teacher's"

    plain = build_spec(distill_config(teacher, "tiny_bert", alias=None))
    assert plain.name == "teach-plain-tiny_bert" and plain.distill.teacher is None
    assert set(plain.space.distributions) == set(spec.space.distributions) - {"distill_temperature", "distill_alpha"}
    by_version = build_spec(distill_config(teacher, "tiny_bert", alias="ensemble"))
    assert by_version.distill.teacher == "models:/teach@ensemble"
    with pytest.raises(ConfigError) as err:
        distill_config(teacher, "tiny_bert", overrides=["study.num_samples"])
    assert err.value.key == "overrides"


def test_a_distillation_setting_given_a_value_is_fixed_not_searched(tmp_path):
    spec = build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", "distill.teacher=teach",
                               "+search.distill_alpha=0.25"]))
    assert spec.space.fixed["distill_alpha"] == 0.25 and "distill_temperature" in spec.space.distributions


@pytest.mark.integration
def test_an_ensemble_teaches_with_its_members_combined_outputs(registered_teacher, mlflow_server):
    """Two members (the same tiny BERT twice): the ensemble's outputs are log mean probabilities, as it predicts."""
    client = tracking_client(mlflow_server)
    run = client.create_run(client.create_experiment("ensemble_teacher"))
    folder = str(registered_teacher / "model")
    log_pyfunc(mlflow_server, run.info.run_id, EnsembleModel("text_classification"),
               {"member_0": folder, "member_1": folder}, "ensemble_teacher")
    spec = study_spec(registered_teacher, mlflow_server, "distill.teacher=models:/ensemble_teacher/1")
    data = prepare_study_data(spec, log=lambda _: None)
    taught = with_teacher(spec, data, lambda _: None)
    single, _ = predict(load_model(registered_teacher / "model"), data.train, data.pad_token_id, 64,
                        torch.device("cpu"))
    assert torch.tensor(taught.train.teacher) == pytest.approx(single.log_softmax(-1), abs=1e-5)


@pytest.mark.parametrize(("given", "says"), [
    ([], "distill.teacher="),                                          # nothing would teach the rows
    (["distill.teacher=teach", "data.cv_folds=3"], "data.cv_folds"),   # folds hold labelled rows out
    (["distill.teacher=teach", "data.text_column=sentence"], "no column 'sentence'"),
])
def test_unlabeled_rows_need_a_teacher_a_validation_split_and_the_text_column(given, says, tmp_path):
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("text\na quietly moving film\n")
    train = tmp_path / "train.csv"
    train.write_text("sentence,text,label\na,a,0\nb,b,1\n")
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", f"data.unlabeled_path={unlabeled}",
                            f"data.train_path={train}", f"data.validation_path={train}", *given]))
    assert err.value.key == "data.unlabeled_path" and says in err.value.message, err.value


def test_a_missing_unlabeled_file_is_refused_by_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_spec(compose(["model=tiny_bert", f"storage.root={tmp_path}", "distill.teacher=teach",
                            f"data.unlabeled_path={tmp_path}/nothing.csv"]))
    assert err.value.key == "data.unlabeled_path" and "does not exist" in err.value.message


@pytest.mark.integration
def test_the_teacher_labels_the_unlabeled_rows_too(registered_teacher, mlflow_server, tmp_path):
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("text\na quietly moving film\nan empty exercise\n")
    spec = study_spec(registered_teacher, mlflow_server, "distill.teacher=teacher_sst2",
                      f"data.unlabeled_path={unlabeled}")
    taught = with_teacher(spec, prepare_study_data(spec, log=lambda _: None), lambda _: None)
    assert len(taught.train) == 122 and len(taught.train.teacher) == 122 and taught.train.labels[-2:] == [-1, -1]
