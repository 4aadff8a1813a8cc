"""CUDA out-of-memory recovery, on the CPU: the real ``torch.OutOfMemoryError`` is raised from the
model's forward pass whenever it is handed more rows than a threshold, as a GPU too small for that
micro-batch would. (A stand-in for a GPU, which this machine does not have.)"""

import pytest
import torch

from trainers import TextClassifier, TrainConfig, fine_tune, prepare_data
from trainers.oom import MicroBatching, TrainingOutOfMemory


@pytest.fixture
def oom_above(monkeypatch):
    """Makes every forward pass with more than ``rows`` rows run out of memory; records the sizes seen."""
    seen: list[int] = []
    original = TextClassifier.forward

    def install(rows: int) -> list[int]:
        def forward(self, input_ids, attention_mask, token_type_ids=None):
            if self.training and len(input_ids) > rows:
                raise torch.OutOfMemoryError(f"CUDA out of memory (injected above {rows} rows)")
            if self.training:
                seen.append(len(input_ids))
            return original(self, input_ids, attention_mask, token_type_ids)

        monkeypatch.setattr(TextClassifier, "forward", forward)
        return seen

    return install


class _Record:
    def __init__(self) -> None:
        self.history = []

    def report(self, metrics, checkpoint_dir) -> None:
        self.history.append(dict(metrics))


def _config(tiny_bert, **overrides) -> TrainConfig:
    # No dropout, so the split and unsplit runs draw no random masks and can be compared number for number.
    return TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=1e-3, batch_size=32,
                       dropout=0.0, warmup_ratio=0.0, num_threads=1, **overrides)


def test_oom_halves_the_micro_batch_and_keeps_the_effective_batch(small_sst2, tiny_bert, oom_above):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=128)
    unsplit = _Record()
    fine_tune(_config(tiny_bert), data, unsplit)

    seen = oom_above(10)
    recovered = _Record()
    fine_tune(_config(tiny_bert), data, recovered)

    assert max(seen) == 8  # 32 -> 16 -> 8 rows per forward pass
    assert [m["micro_batch_size"] for m in recovered.history] == [8, 8]
    assert [m["grad_accumulation"] for m in recovered.history] == [4, 4]  # 4 x 8 = the batch_size of 32
    assert len(recovered.history) == 2  # the trial finished
    # Same batches, same optimizer steps and LR schedule: the same model, up to float summation order.
    for before, after in zip(unsplit.history, recovered.history, strict=True):
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-4)
        assert after["val_loss"] == pytest.approx(before["val_loss"], rel=1e-4)
        assert after["lr"] == before["lr"]


def test_oom_below_the_floor_ends_the_run_as_out_of_memory(small_sst2, tiny_bert, oom_above):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64)
    oom_above(3)
    floor_error = r"micro-batch 4 \(batch_size 32, floor 4\); lower trainer.min_micro_batch_size"
    with pytest.raises(TrainingOutOfMemory, match=floor_error):
        fine_tune(_config(tiny_bert, min_micro_batch_size=4), data, _Record())


def test_micro_batching_halves_down_to_the_floor():
    micro = MicroBatching(batch_size=24, floor=2)
    sizes = []
    with pytest.raises(TrainingOutOfMemory):
        while True:
            micro.shrink()
            sizes.append((micro.size, micro.accumulation))
    assert sizes == [(12, 2), (6, 4), (3, 8), (2, 12)]


def test_evaluation_at_its_floor_names_the_eval_batch():
    micro = MicroBatching(batch_size=2, floor=1, setting="trainer.eval_batch_size")
    micro.shrink()
    with pytest.raises(TrainingOutOfMemory, match=r"\(trainer.eval_batch_size 2, floor 1\); lower trainer.max_length"):
        micro.shrink()
    batch = {"labels": torch.arange(5), "input_ids": torch.zeros(5, 3)}
    assert [len(part["labels"]) for part in MicroBatching(5, 1, 2).split(batch)] == [2, 2, 1]


def _trial_that_runs_out_of_memory_above_10_rows(config, *, data, trainer, checkpoints, **settings):
    """The real trainable, in a Ray worker whose "GPU" holds at most 10 rows per forward pass."""
    import torch

    from hpo.study.trial import run_trial
    from trainers.modeling import TextClassifier

    original = TextClassifier.forward

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        if self.training and len(input_ids) > 10:
            raise torch.OutOfMemoryError("CUDA out of memory (injected above 10 rows)")
        return original(self, input_ids, attention_mask, token_type_ids)

    TextClassifier.forward = forward
    try:
        run_trial(config, data=data, trainer=trainer, checkpoints=checkpoints, **settings)  # task, system_metrics
    finally:
        TextClassifier.forward = original


@pytest.mark.integration
@pytest.mark.slow  # a whole study
def test_a_study_records_an_oom_trial_as_failed_and_goes_on(small_sst2, tiny_bert, local_ray, tmp_path):
    """Grid over batch_size 8 and 32 with a micro-batch floor of 16: 8 fits; 32 -> 16 still runs out -> `oom`."""
    import sys

    import optuna
    import ray.cloudpickle
    from mlflow import MlflowClient

    from hpo.config.compose import build_spec, compose
    from hpo.stores.registry import Registry
    from hpo.stores.tracking import FAIL_REASON_TAG, STATUS_TAG
    from hpo.study.run import run_study

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the wrapper travels to the worker
    fixed = [f"search.{k}={v}" for k, v in (("learning_rate", 1e-3), ("freeze_depth", 0), ("weight_decay", 0.0),
                                            ("dropout", 0.0), ("layer_lr_decay", 1.0), ("warmup_ratio", 0.0))]
    spec = build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", "study.name=oom", "study.num_samples=2", "sampler=grid",
        "scheduler=fifo", "search.batch_size.choices=[8,32]", *fixed, "trainer.max_epochs=1",
        "trainer.min_micro_batch_size=16", f"storage.root={tmp_path}", "tracking.register_best=false",
    ]))
    outcome = run_study(spec, trainable=_trial_that_runs_out_of_memory_above_10_rows)

    assert outcome.status == "completed" and outcome.best_params["batch_size"] == 8
    trials = {t.params["batch_size"]: t for t in Registry(spec.storage.registry_url).trials("oom")}
    assert (trials[8].state, trials[8].fail_reason) == ("completed", None)
    assert (trials[32].state, trials[32].fail_reason) == ("failed", "oom")
    run = MlflowClient(spec.storage.tracking_uri).get_run(trials[32].mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.tags[STATUS_TAG] == "failed"
    assert run.data.tags[FAIL_REASON_TAG] == "oom"
    optuna_trials = {t.params["batch_size"]: t for t in optuna.load_study(study_name="oom",
                                                                          storage=spec.storage.optuna_url).trials}
    assert optuna_trials[32].state == optuna.trial.TrialState.PRUNED and optuna_trials[32].constraints == {"oom": 1.0}
    assert optuna_trials[8].state == optuna.trial.TrialState.COMPLETE
