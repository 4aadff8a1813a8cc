"""The search-quality benchmark's bookkeeping: budgets, epochs to the grid's best and the printed ratio."""

from __future__ import annotations

import pytest

from bench.search_quality import Run, ratio_line, summary


def test_summary_reads_each_runs_anytime_curve_at_every_budget_and_target():
    runs = [Run([0.70, 0.80, 0.83, 0.83], wall_s=10.0), Run([0.81, 0.81], wall_s=20.0)]
    result = summary(runs, [1, 3], target=0.83)
    assert result["best_at"][1]["mean"] == pytest.approx(0.755)
    assert result["best_at"][3]["min"] == 0.81 and result["best_at"][3]["max"] == 0.83  # a short run keeps its last
    assert result["epochs_to_grid_best"] == [3, None]
    assert result["epochs_spent"]["mean"] == 3 and result["wall_s"]["mean"] == 15.0


def test_the_ratio_counts_only_seeds_that_reached_the_grids_best_and_says_how_many():
    line = ratio_line({"epochs_to_grid_best": [3, 6, None]}, grid_epochs=18)
    assert line.startswith("epochs_to_grid_best(hpo) / epochs(grid) = 0.250 (sd 0.083, 0.167..0.333; 2 of 3 seeds")
    assert "not reached by any seed" in ratio_line({"epochs_to_grid_best": [None]}, 18)
