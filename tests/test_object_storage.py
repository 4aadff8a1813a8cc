"""Trial checkpoints in an object store (`storage.checkpoints=s3://...`), on an S3-compatible server.

Ray writes every checkpoint to the bucket through pyarrow; the driver reads them back from there
to upload each trial's best model to MLflow, register the study's best, and find the checkpoint an
interrupted trial resumes from, which the trial downloads before it trains on.
"""

import dataclasses

import pyarrow.fs as pafs
import pytest
from mlflow import MlflowClient

from hpo.config.compose import build_spec, compose
from hpo.errors import ConfigError
from hpo.stores.checkpoints import CheckpointStore
from hpo.stores.registry import Registry
from hpo.study.run import run_study
from trainers import fine_tune, load_model, prepare_data

BUCKET = "hpo-test"
pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies


@pytest.fixture(scope="module")
def bucket_uri(s3_endpoint) -> str:
    """``s3://`` URI of a fresh bucket prefix. Credentials sit in the URI because the session's Ray
    workers were started before this test could set AWS_* variables for them; use those variables
    (or an instance role) on a real cluster."""
    options = f"endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    pafs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=s3_endpoint, scheme="http",
                      region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
    return f"s3://test:test@{BUCKET}/hpo?{options}"


def _overrides(small_sst2, tiny_bert, root, *extra: str) -> list[str]:
    return ["model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
            f"data.validation_path={small_sst2['dev']}", "scheduler=fifo", "search.learning_rate.high=1e-3",
            f"storage.root={root}", *extra]


def test_a_study_keeps_its_checkpoints_in_a_bucket(small_sst2, tiny_bert, local_ray, mlflow_server, bucket_uri,
                                                   tmp_path):
    spec = build_spec(compose(_overrides(
        small_sst2, tiny_bert, tmp_path, "study.name=bucketed", "study.num_samples=2", "study.max_concurrent=2",
        "trainer.max_epochs=2", f"tracking.uri={mlflow_server}", f"storage.checkpoints='{bucket_uri}'",
        "storage.keep=all")))  # ended trials keep their resume state: the resume below reads it
    outcome = run_study(spec)

    store = CheckpointStore(bucket_uri)
    written = store.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/hpo/bucketed/tune", recursive=True))
    assert any(i.path.endswith("/best/delta.safetensors") for i in written), "checkpoints are in the bucket"
    assert not list(tmp_path.glob("bucketed/tune/*/trial_*/checkpoint_*")), "and not on the driver's disk"
    assert outcome.status == "completed" and outcome.best_checkpoint.startswith(f"s3://{BUCKET}/hpo/bucketed/")

    client = MlflowClient(mlflow_server)
    for trial in Registry.open(spec.storage.registry_url).trials("bucketed"):  # downloaded from the bucket
        assert {"checkpoint/config.json", "checkpoint/model.safetensors"} <= {
            a.path for a in client.list_artifacts(trial.mlflow_run_id, "checkpoint")}
    assert client.search_model_versions("name='bucketed'"), "the best model, from the bucket, is registered"

    # What `hpo resume` hands an interrupted trial: its newest checkpoint in the bucket, which the trial
    # downloads (CheckpointStore.local_copy, as hpo.study.trial.run_trial does) and continues from.
    trial = Registry.open(spec.storage.registry_url).trials("bucketed")[0]
    latest = store.latest_of_trial(trial.ray_trial_dir, trial.checkpoint)
    assert latest is not None and store.read_summary(latest)["epoch"] == 2
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, max_length=64, train_limit=200,
                        validation_limit=100)
    with store.local_copy(latest) as folder:
        assert load_model(folder / "best").config.id2label == {0: "0", 1: "1"}
        reports = _Reports()
        fine_tune(dataclasses.replace(spec.trainer, **trial.params, max_epochs=3, resume_from=str(folder)),
                  data, reports)
    assert reports.epochs == [3], "continued after epoch 2, nothing retrained"


def test_an_unknown_scheme_or_an_unreachable_bucket_stops_before_anything_is_recorded(
        small_sst2, tiny_bert, s3_endpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"storage.checkpoints: ftp:// is not a filesystem"):
        build_spec(compose(_overrides(small_sst2, tiny_bert, tmp_path, "storage.checkpoints=ftp://host/x")))

    missing = f"s3://test:test@no-such-bucket/hpo?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    spec = build_spec(compose(_overrides(small_sst2, tiny_bert, tmp_path, "study.name=nowhere",
                                         f"storage.checkpoints='{missing}'")))
    with pytest.raises(ConfigError, match=r"storage.checkpoints: cannot write to s3://no-such-bucket/hpo \(") as err:
        run_study(spec)
    assert "test:test" not in str(err.value), "credentials never reach a message"
    assert Registry.open(spec.storage.registry_url).get("nowhere") is None


class _Reports:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def report(self, metrics, checkpoint_dir) -> None:
        self.epochs.append(int(metrics["epoch"]))
