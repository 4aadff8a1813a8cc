"""The benchmark suite's parts on known tables: what a table says (seed means, oracle, median), that the replay's
ASHA rule decides as Ray's does, that a replayed study spends the budget it is given, and the greedy portfolio."""

from __future__ import annotations

import csv
import doctest
import json
import random

import pytest

# Ray's bracket, to hold the replay's rule to it: ``_Bracket`` is private, but it is the rule itself (the public
# scheduler needs a running Tune controller around it).
from ray.tune.schedulers.async_hyperband import _Bracket

import bench.suite.datasets
import bench.suite.portfolio
import bench.suite.surrogate
import bench.suite.tables
from bench.suite.datasets import SUITE
from bench.suite.portfolio import greedy, leave_one_out
from bench.suite.record import draw_configs, study_spec
from bench.suite.simulate import (
    Asha,
    Design,
    design_spec,
    model_spaces,
    regret,
    replay_confirmed,
    replay_i_epoch,
    replay_study,
)
from bench.suite.surrogate import Surrogate
from bench.suite.tables import BASELINE, FIELDS, read_table


@pytest.mark.parametrize("module", [bench.suite.tables, bench.suite.portfolio, bench.suite.datasets,
                                    bench.suite.surrogate])
def test_the_docstring_examples_hold(module):
    assert doctest.testmod(module).failed == 0


def write_table(path, runs, seconds=None):
    """runs: (model, config, seed, params, [values per epoch]); ``seconds``: per model, an epoch's (default 10)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator="\n")
        writer.writeheader()
        for model, config, seed, params, curve in runs:
            for epoch, value in enumerate(curve, 1):
                writer.writerow({"model": model, "config": config, "seed": seed, "params": json.dumps(params),
                                 "epoch": epoch, "seconds": (seconds or {}).get(model, 10.0),
                                 "metrics": json.dumps({"val_accuracy": value})})


def test_the_oracle_is_the_best_config_by_its_seed_mean_not_a_lucky_run(tmp_path):
    p = {"model": "m"}
    write_table(tmp_path / "t.csv", [
        ("m", "0", 0, p, [0.70, 0.90, 0.80]),  # lucky: 0.90 once
        ("m", "1", 0, p, [0.80, 0.85, 0.86]), ("m", "1", 1, p, [0.80, 0.84, 0.85]), ("m", "1", 2, p, [0.8, .83, .84]),
        ("m", "0", 1, p, [0.70, 0.75, 0.76]), ("m", "0", 2, p, [0.70, 0.74, 0.75]),
        ("m", "2", 0, p, [0.50, 0.55, 0.60]),
        ("m", BASELINE, 0, p, [0.60, 0.65, 0.66]),
        ("m", "3", 0, p, [0.90]),  # unfinished: one epoch of three
    ])
    table = read_table(tmp_path / "t.csv")
    assert table.configs("m") == [("m", "0"), ("m", "1"), ("m", "2")]  # no baseline, no unfinished run
    assert table.oracle("m") == (("m", "1"), pytest.approx(0.85))
    assert table.top("m", 2) == ["0", "1"]  # by the seed-0 run, as the recorder picks what to train again
    assert table.median("m") == pytest.approx(0.86)
    assert regret(0.85, 0.85, 0.6) == 0 and regret(0.6, 0.85, 0.6) == 1 and regret(None, 0.85, 0.6) == 1


def test_the_replay_stops_exactly_the_trials_rays_asha_stops():
    rng = random.Random(0)
    for _ in range(20):
        ours, rays = Asha(1, 2, 3), _Bracket(min_t=1, max_t=3, reduction_factor=2, s=0)
        for trial in range(12):
            for epoch in (1, 2):
                value = rng.random()

                class T:  # what the bracket reads of a trial
                    trial_id = str(trial)
                stopped = rays.on_result(T, epoch, value) == "STOP"
                assert ours.stops(None, trial, epoch, value) == stopped
                if stopped:
                    break


@pytest.fixture(scope="module")
def sst2_table(tmp_path_factory):
    """A table of sst2's first 12 drawn small-model configs whose value is a known function of the learning rate."""
    spec = study_spec(SUITE["sst2"])
    path = tmp_path_factory.mktemp("suite") / "sst2.csv"
    runs = []
    for i, params in enumerate(draw_configs(spec, "minilm_l6", 12)):
        top = 0.9 - abs(params["learning_rate"] - 1e-4) * 1000
        runs.append(("minilm_l6", str(i), 0, params, [top - 0.1, top - 0.02, top]))
    for i, params in enumerate(draw_configs(spec, "mpnet_base", 6)):  # 4x the cost, 5 points better
        runs.append(("mpnet_base", str(i), 0, params, [0.85, 0.9, 0.95]))
    write_table(path, runs, {"mpnet_base": 40.0})
    return spec, read_table(path)


def test_a_replayed_study_spends_its_budget_and_asha_shortens_trials(sst2_table):
    recording, table = sst2_table
    surrogate = Surrogate(table, model_spaces(recording))
    budget = 8 * 30.0
    random_fifo = Design("r", ("sampler=random", "scheduler=fifo", "search.first_trial=sampler"))
    tpe_asha = Design("d", ("search.first_trial=sampler",))
    fifo = replay_study(design_spec(SUITE["sst2"], random_fifo), surrogate, budget, "minilm_l6", random_fifo, seed=0)
    asha = replay_study(design_spec(SUITE["sst2"], tpe_asha), surrogate, budget, "minilm_l6", tpe_asha, seed=0)
    assert fifo.spent[-1] >= budget and fifo.spent[-2] < budget  # stops at the first epoch past the budget
    assert fifo.trials == 8 and asha.trials > 8  # ASHA stopped some trials early: more of them fit
    assert all(b >= a for a, b in zip(fifo.quality, fifo.quality[1:], strict=False))  # an incumbent only improves
    i_epoch = replay_i_epoch(surrogate, recording, budget, "minilm_l6", seed=0)
    assert i_epoch.trials >= 4 and i_epoch.quality[-1] >= i_epoch.quality[0]


def test_model_choice_by_ei_per_second_replays_and_spends_on_the_costlier_model_when_it_pays(sst2_table):
    recording, table = sst2_table
    surrogate = Surrogate(table, model_spaces(recording))
    searched = ("search=models", "search.first_trial=midpoint", "scheduler=asha_per_model",
                "search.model_choice=ei_per_second")
    design = Design("ei", searched)
    trace = replay_study(design_spec(SUITE["sst2"], design), surrogate, 16 * 30.0, "minilm_l6", design, seed=0)
    assert trace.trials >= 3 and trace.quality[-1] == pytest.approx(0.95)  # mpnet's, found and kept


def test_the_portfolio_for_a_dataset_is_built_without_it(sst2_table, monkeypatch):
    _, table = sst2_table
    seen = []
    monkeypatch.setattr(bench.suite.portfolio, "build",
                        lambda tables, datasets, size=4, models=None, cost_aware=False: seen.extend(datasets) or [])
    leave_one_out({"sst2": table, "emotion": table, "mrpc": table, "cifar10": table}, "sst2")
    assert sorted(seen) == ["emotion", "mrpc"]  # the other text datasets; never sst2, never an image dataset


def test_greedy_adds_the_config_that_covers_what_the_portfolio_misses():
    regrets = {("m", "a"): {"x": 0.0, "y": 0.9, "z": 0.9}, ("m", "b"): {"x": 0.3, "y": 0.3, "z": 0.3},
               ("m", "c"): {"x": 1.0, "y": 0.0, "z": 0.0}}
    # b is best alone (0.3 everywhere); then c, which fixes two datasets of three, over a, which fixes one
    assert greedy(regrets, 2) == [("m", "b"), ("m", "c")]


def test_a_cost_aware_portfolio_puts_a_costly_model_first_only_when_it_gains_as_much_more():
    regrets = {("big", "a"): {"x": 0.0, "y": 0.0}, ("m", "b"): {"x": 0.2, "y": 0.3}, ("m", "c"): {"x": 0.5, "y": 0.1}}
    assert greedy(regrets, 2)[0] == ("big", "a")  # the best alone, whatever it costs
    # per unit of cost: b (a drop of 0.75) before big (1.0 over 6x the cost); then c (0.1 for 1) before big
    # (0.25 for 6); at 2x the cost, big's 0.25 / 2 beats c's 0.1
    assert greedy(regrets, 2, cost={"big": 6.0, "m": 1.0}) == [("m", "b"), ("m", "c")]
    assert greedy(regrets, 3, cost={"big": 2.0, "m": 1.0})[:2] == [("m", "b"), ("big", "a")]  # 0.25 / 2 > 0.1


def test_a_confirmed_study_chooses_by_the_seed_mean_where_a_plain_one_keeps_a_lucky_run(tmp_path):
    recording = study_spec(SUITE["sst2"])
    lucky, steady = draw_configs(recording, "minilm_l6", 2)
    write_table(tmp_path / "sst2.csv", [
        ("minilm_l6", "0", 0, lucky, [0.80, 0.90, 0.90]), ("minilm_l6", "0", 1, lucky, [0.60, 0.60, 0.60]),
        ("minilm_l6", "0", 2, lucky, [0.60, 0.60, 0.60]),  # 0.90 once, 0.70 on the mean of 3 seeds
        ("minilm_l6", "1", 0, steady, [0.80, 0.85, 0.85]), ("minilm_l6", "1", 1, steady, [0.80, 0.85, 0.85]),
        ("minilm_l6", "1", 2, steady, [0.80, 0.85, 0.85])])
    surrogate = Surrogate(read_table(tmp_path / "sst2.csv"), model_spaces(recording), k=1)
    design = Design("c", ("sampler=random", "scheduler=fifo", "search.first_trial=sampler", "confirm.top_k=2"))
    spec = design_spec(SUITE["sst2"], design)
    budget = 16 * 30.0
    assert replay_study(spec, surrogate, budget, "minilm_l6", design, seed=0).at(budget) == pytest.approx(0.70)
    assert replay_confirmed(spec, surrogate, budget, "minilm_l6", design, seed=0) == pytest.approx(0.85)
