"""Pure logic of issue 13's additions: confirmation ranking, per-class results, class weights, stratified limits,
the new search dimension and config keys. No Ray, no servers."""

import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from hpo.config.compose import build_spec, compose
from hpo.config.search_space import SearchSpace
from hpo.errors import ConfigError
from hpo.ranking import candidates, rerun_seeds, summarize
from hpo.states import TrialState
from trainers.data import subsample
from trainers.heads import ClassificationHead, class_weights
from trainers.metrics import classification_metrics, per_class
from trainers.objective import Objective

MAX, MIN = Objective("val_accuracy", "max"), Objective("val_loss", "min")


def test_the_winner_is_the_best_mean_over_reruns_and_the_gap_is_the_search_best_s_optimism():
    summary = summarize({1: 0.90, 2: 0.86, 3: 0.85}, {1: [0.84, 0.85], 2: [0.86, 0.87], 3: [0.80, 0.81]}, MAX)
    assert [c.trial_number for c in summary.configs] == [2, 1, 3]
    assert (summary.winner, summary.search_best, summary.winner_changed) == (2, 1, True)
    assert summary.optimism_gap == pytest.approx(0.90 - 0.845)


def test_minimized_metrics_rank_and_measure_the_gap_the_other_way():
    summary = summarize({1: 0.30, 2: 0.32}, {1: [0.40, 0.42], 2: [0.33, 0.35]}, MIN)
    assert summary.winner == 2 and summary.search_best == 1
    assert summary.optimism_gap == pytest.approx(0.41 - 0.30)  # the search's loss looked lower than it is


def test_the_lower_bound_prefers_the_steadier_config_over_a_slightly_higher_mean():
    reruns = {1: [0.80, 0.90], 2: [0.845, 0.846]}
    assert summarize({1: 0.9, 2: 0.9}, reruns, MAX, "mean").winner == 1
    assert summarize({1: 0.9, 2: 0.9}, reruns, MAX, "lcb").winner == 2


def test_a_config_with_no_finished_rerun_ranks_last():
    summary = summarize({1: 0.9, 2: 0.8}, {2: [0.7]}, MAX)
    assert summary.winner == 2 and summary.optimism_gap is None and summary.configs[-1].trial_number == 1


def test_only_completed_trials_are_confirmed_best_first():
    trials = [SimpleNamespace(number=n, state=s, best_metric=v) for n, s, v in
              [(0, TrialState.COMPLETED, 0.8), (1, TrialState.PRUNED, 0.95), (2, TrialState.COMPLETED, 0.85),
               (3, TrialState.FAILED, None), (4, TrialState.COMPLETED, 0.7)]]
    assert [t.number for t in candidates(trials, MAX, 2)] == [2, 0]
    assert rerun_seeds(7, 3) == [8, 9, 10]


def test_per_class_results_and_balanced_accuracy():
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0], [0, 3.0, 0]])
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    report = per_class(logits, labels, ("neg", "neu", "pos"))
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [1, 1, 1]]
    assert report["per_class"]["pos"] == {"precision": 1.0, "recall": pytest.approx(1 / 3), "f1": 0.5, "support": 3}
    metrics = classification_metrics(logits, labels)
    assert metrics["val_accuracy"] == pytest.approx(4 / 6)
    assert metrics["val_balanced_accuracy"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_balanced_class_weights_make_each_class_weigh_the_same_in_the_loss():
    labels = [0] * 90 + [1] * 10
    weights = class_weights("balanced", labels, 2)
    counts = Counter(labels)
    assert weights[0] * counts[0] == pytest.approx(weights[1] * counts[1])
    assert class_weights("none", labels, 2) is None
    with pytest.raises(ValueError, match="class_weights"):
        class_weights("inverse", labels, 2)


def test_stratified_limits_keep_each_label_s_share_and_unstratified_limits_pick_as_before():
    labels = ["a"] * 700 + ["b"] * 250 + ["c"] * 50
    texts = [str(i) for i in range(len(labels))]
    _, kept = subsample(texts, labels, 100, seed=3, stratified=True)
    assert Counter(kept) == {"a": 70, "b": 25, "c": 5}
    _, small = subsample(texts, labels, 7, seed=3, stratified=True)
    assert len(small) == 7 and Counter(small)["a"] == 5
    before = [texts[i] for i in random.Random(3).sample(range(len(texts)), 100)]
    assert subsample(texts, labels, 100, seed=3)[0] == before, "a study recorded before stratify sees the same rows"


def test_class_weights_is_a_named_search_dimension():
    space = SearchSpace.from_config({"class_weights": {"choices": ["none", "balanced"]}}, num_layers=2)
    assert space.midpoint() == {"class_weights": "none"}
    with pytest.raises(ConfigError, match="search.class_weights"):
        SearchSpace.from_config({"class_weights": {"low": 0, "high": 1}}, num_layers=2)
    with pytest.raises(ConfigError, match="search.class_weights.choices"):
        SearchSpace.from_config({"class_weights": {"choices": ["none", "inverse"]}}, num_layers=2)


@pytest.mark.parametrize(("override", "key"), [("confirm.rank_by=median", "confirm.rank_by"),
                                               ("confirm.top_k=-1", "confirm.top_k"),
                                               ("confirm.seeds=0", "confirm.seeds")])
def test_bad_confirmation_settings_are_refused_by_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_spec(compose(["model=tiny_bert", override]))


def test_an_ensemble_averages_probabilities():
    logits = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log(), torch.tensor([[0.5, 0.5], [0.6, 0.4]]).log()]
    average = ClassificationHead().combine(logits).exp()
    assert torch.allclose(average, torch.tensor([[0.7, 0.3], [0.4, 0.6]]))


@pytest.mark.parametrize("objectives", ["[val_accuracy:max]", "[val_accuracy:max,speed:min]",
                                        "[val_accuracy:max,latency_ms:max]", "[latency_ms:min,val_accuracy:max]",
                                        "[val_accuracy:max,val_accuracy:max]"])
def test_bad_objectives_are_refused_by_key(objectives):
    with pytest.raises(ConfigError, match=r"study\.objectives"):
        build_spec(compose(["model=tiny_bert", f"study.objectives={objectives}"]))


def test_objectives_set_the_primary_metric_and_the_rest():
    spec = build_spec(compose(["model=tiny_bert", "study.objectives=[val_f1_macro:max,model_mb:min]"]))
    assert spec.objective == Objective("val_f1_macro", "max") and spec.trainer.metric == "val_f1_macro"
    assert spec.study.extra_objectives == (Objective("model_mb", "min"),)


def test_cross_validation_folds_are_checked():
    with pytest.raises(ConfigError, match=r"data\.cv_folds"):
        build_spec(compose(["model=tiny_bert", "data.cv_folds=1"]))
    assert build_spec(compose(["model=tiny_bert", "data.cv_folds=5"])).trainer.cv_folds == 5
