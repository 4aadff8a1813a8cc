"""The replay benchmark's parts: a known table gives known curves, and a replayed study records them."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench.replay.table import ReplayTable, anytime, best_at_budget, epochs_to_reach, normalized

SPACE = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True), "batch_size": CategoricalDistribution([16, 32]),
         "freeze_depth": IntDistribution(0, 2)}
ROWS = [  # config, seed, learning_rate, batch_size, freeze_depth, epoch, val_accuracy
    (0, 0, 1e-5, 16, 0, [0.60, 0.65, 0.70]),
    (1, 0, 1e-3, 32, 2, [0.80, 0.78, 0.75]),
    (2, 0, 1e-4, 16, 1, [0.70, 0.82, 0.84]),
    (2, 1, 1e-4, 16, 1, [0.71, 0.80, 0.83]),
]


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "table.csv"
    lines = ["config,seed,learning_rate,batch_size,freeze_depth,epoch,seconds,val_accuracy"]
    for config, seed, lr, batch, depth, curve in ROWS:
        lines += [f"{config},{seed},{lr},{batch},{depth},{e},1.0,{v}" for e, v in enumerate(curve, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_known_table_reads_back_with_its_curves_and_oracle(table_csv):
    table = ReplayTable.from_csv(table_csv, SPACE)
    assert [r.params for r in table.recorded] == [
        {"learning_rate": 1e-5, "batch_size": 16, "freeze_depth": 0},
        {"learning_rate": 1e-3, "batch_size": 32, "freeze_depth": 2},
        {"learning_rate": 1e-4, "batch_size": 16, "freeze_depth": 1}]
    assert table.recorded[2].curves == {0: [0.70, 0.82, 0.84], 1: [0.71, 0.80, 0.83]}
    assert table.oracle(3) == 0.84 and table.oracle(1) == 0.80


def test_nearest_is_measured_in_the_normalized_space(table_csv):
    table = ReplayTable.from_csv(table_csv, SPACE)
    assert normalized({"learning_rate": 1e-4, "batch_size": 32, "freeze_depth": 1}, SPACE) == pytest.approx(
        [0.5, 1.0, 0.5])
    # 2e-4 is closer to 1e-4 than to 1e-3 on the log scale (on a linear one it would not be)
    assert table.nearest({"learning_rate": 2e-4, "batch_size": 16, "freeze_depth": 1}).params["learning_rate"] == 1e-4
    assert table.nearest({"learning_rate": 9e-4, "batch_size": 32, "freeze_depth": 2}).curves[0] == [0.80, 0.78, 0.75]


def test_anytime_bookkeeping():
    curve = anytime([[0.60, 0.65], [0.80, 0.78, 0.75], [0.70]])
    assert curve == [0.60, 0.65, 0.80, 0.80, 0.80, 0.80]
    assert epochs_to_reach(curve, 0.8) == 3 and epochs_to_reach(curve, 0.9) is None
    assert best_at_budget(curve, 2) == 0.65 and best_at_budget(curve, 99) == 0.80
    assert anytime([[0.5, 0.4], [0.45]], higher_is_better=False) == [0.5, 0.4, 0.4]


@pytest.mark.integration
@pytest.mark.slow  # a whole study
def test_a_replayed_study_records_the_tables_curves(table_csv, small_sst2, tiny_bert, local_ray, tmp_path):
    """Through the real ASHA, searcher and ledger: every trial's curve is its nearest config's, cut where
    the scheduler stopped it."""
    from bench.replay.trainable import replay_trainable
    from hpo.config.compose import build_spec, compose
    from hpo.stores.registry import Registry
    from hpo.study.run import run_study

    spec = build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", "study.name=replayed", "study.num_samples=6",
        "study.max_concurrent=1", "sampler=random", "scheduler=asha", "trainer.max_epochs=3",
        "search.learning_rate.low=1e-5", "search.learning_rate.high=1e-3", "search.batch_size.choices=[16,32]",
        "~search.weight_decay", "~search.dropout", "~search.layer_lr_decay", "~search.warmup_ratio",
        f"storage.root={tmp_path / 'runs'}", "tracking.register_best=false"]))
    table = ReplayTable.from_csv(table_csv, SPACE)
    outcome = run_study(spec, trainable=replay_trainable(table))
    trials = Registry(spec.storage.registry_url).trials("replayed")
    assert len(trials) == 6 and outcome.best_value == max(t.best_metric for t in trials)
    for t in trials:
        recorded = table.nearest(t.params).curves[0]
        assert [t.values[e] for e in sorted(t.values)] == recorded[: t.epochs], t.params
        assert t.epochs == 3 or t.state == "pruned"


def test_top_k_after_one_epoch_keeps_the_best_first_epochs_and_trains_them_on(table_csv):
    from bench.replay.table import top_k_after_one_epoch

    table = ReplayTable.from_csv(table_csv, SPACE)
    curve = top_k_after_one_epoch(table, SPACE, n=6, k=1, seed=0)
    assert len(curve) == 6 + 2  # six first epochs, then epochs 2 and 3 of the one kept
    firsts = [table.nearest(p).curves[0][0] for p in _draws(6)]
    kept = max(range(6), key=lambda i: firsts[i])
    assert curve[:6] == anytime([[v] for v in firsts])
    assert curve[-1] == max(max(firsts), *table.nearest(_draws(6)[kept]).curves[0][1:])


def _draws(n):
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [study.ask(SPACE).params for _ in range(n)]
