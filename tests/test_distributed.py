"""Data-parallel training (trainers.distributed): a 2-worker DDP group (gloo, this machine's CPUs) trains the same
model as one worker with the same seed and global batch: the same loss curve and validation metrics for 2 epochs.
Dropout is off (two processes draw other masks than one); the training rows leave the last global batch a single
row, so one worker trains a zero-weight stand-in; the validation rows split unevenly."""

from __future__ import annotations

import pytest

from tests.helpers.ddp import EpochMetrics, train_and_keep
from trainers import TrainConfig, fine_tune, prepare_data
from trainers.distributed import Workers, run_group

COMPARED = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")
TOLERANCE = 1e-4


@pytest.mark.integration  # starts a process group: the integration tier
def test_two_workers_train_what_one_worker_trains(small_sst2, tiny_bert):
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=97, validation_limit=41)
    cfg = TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=2, batch_size=16, learning_rate=1e-3,
                      dropout=0.0, num_threads=1, seed=3)

    alone = EpochMetrics()
    fine_tune(cfg, data, alone)
    ranks = run_group(2, train_and_keep, fine_tune, cfg, data)

    assert [e["checkpoint"] for e in ranks[0]] == [True, True] and [e["checkpoint"] for e in ranks[1]] == [False] * 2
    gaps = [abs(group[k] - single[k]) for rank in ranks for group, single in zip(rank, alone.history, strict=True)
            for k in COMPARED]
    print(f"largest gap between 2 workers and 1: {max(gaps):.2e}")
    assert max(gaps) <= TOLERANCE, max(gaps)
    assert alone.history[0]["train_loss"] != alone.history[1]["train_loss"], "the model trained"


def test_shares_cover_every_row_once():
    rows = list(range(7))
    shares = [Workers(rank, 3).share(rows) for rank in range(3)]
    assert sorted(sum(shares, [])) == rows and [len(s) for s in shares] == [3, 2, 2]


@pytest.mark.integration
def test_two_image_workers_agree_and_stay_close_to_one():
    """The image loop in a group: every worker augments and mixes the whole global batch, then trains its share; all
    report the same gathered metrics, only the chief writes checkpoints. CPUs have no synchronized batch norm, so
    the trained batch-norm layers see each worker's share (trainers.images.loop): close to one worker, not equal.
    81 rows in batches of 16: the last single row joins the batch before (batch norm cannot train on one row)."""
    from hpo.config.resolvers import PROJECT_ROOT
    from trainers.tasks import DataSource, load_task

    fashion = PROJECT_ROOT / "data" / "fashion_mnist"
    task = load_task("image_classification")
    source = DataSource(train_path=fashion / "train", validation_path=fashion / "validation",
                        settings={"image_size": 32}, train_limit=81, validation_limit=21, stratify=True)
    data = task.prepare(source, "mobilenet_v2", max_length=0, cache_dir=None)
    cfg = TrainConfig(model_name_or_path="mobilenet_v2", max_epochs=2, learning_rate=1e-2, batch_size=16,
                      method="freeze", freeze_depth=17, mixup_alpha=0.2, aug_flip=True, num_threads=1, dropout=0.0)
    alone = EpochMetrics()
    task.fine_tune(cfg, data, alone)
    ranks = run_group(2, train_and_keep, task.fine_tune, cfg, data)
    assert [[e[k] for k in COMPARED] for e in ranks[0]] == [[e[k] for k in COMPARED] for e in ranks[1]]
    assert [e["checkpoint"] for e in ranks[0]] == [True, True] and [e["checkpoint"] for e in ranks[1]] == [False] * 2
    gap = max(abs(group["train_loss"] - single["train_loss"]) for group, single in zip(ranks[0], alone.history,
                                                                                     strict=True))
    print(f"image train_loss, 2 workers against 1: largest gap {gap:.2e}")
    assert gap < 0.1 * alone.history[0]["train_loss"]


def test_a_group_is_placed_over_the_cluster_or_refused_by_key():
    from hpo.config.spec import ResourcesSpec
    from hpo.errors import ConfigError
    from hpo.study._capacity import trials_at_once

    group = ResourcesSpec(cpu=1, gpu=0, reuse_workers=True, workers_per_trial=2)
    assert trials_at_once([{"CPU": 2}, {"CPU": 3}], group, None)[0] == 2
    assert trials_at_once([{"CPU": 8}], group, max_concurrent=10)[0] == 4, "no more groups than workers for them"
    gpus = ResourcesSpec(cpu=4, gpu=1, reuse_workers=True, workers_per_trial=4)
    with pytest.raises(ConfigError) as err:
        trials_at_once([{"CPU": 16, "GPU": 1}, {"CPU": 16, "GPU": 2}], gpus, None)
    assert err.value.key == "resources.workers_per_trial" and "hold 3 such workers" in err.value.message


@pytest.mark.integration
def test_a_custom_function_in_a_group_knows_its_rank_and_rank_0_keeps_the_checkpoints():
    from trainers.tasks import load_task

    cfg = TrainConfig(function="tests.helpers.ddp:ranked_train", metric="score", mode="max", max_epochs=2,
                      num_threads=1)
    ranks = run_group(2, train_and_keep, load_task("custom").fine_tune, cfg, None)
    assert [[e["score"], e["world"]] for rank in ranks for e in rank] == [[3.0, 2.0]] * 4
    assert [e["checkpoint"] for e in ranks[0]] == [True, True] and [e["checkpoint"] for e in ranks[1]] == [False] * 2
