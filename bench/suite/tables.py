"""A dataset's recorded table (``record.py`` writes it): every run's params and per-epoch metrics and seconds, and what
the suite reads from it: a config's value (best epoch, as a study ranks trials), its mean over training seeds, the
oracle (the best config by its 3-seed mean), the median config, and the nearest recorded config to a given one.

    >>> run = lambda *acc: Run({"model": "m"}, [(1.0, {"acc": a}) for a in acc])
    >>> t = Table({("m", "0", 0): run(.7, .8, .8), ("m", "0", 1): run(.6, .7, .7)}, metric="acc")
    >>> round(t.seed_mean("m", "0"), 3), t.curve("m", "0", 0)
    (0.75, [0.7, 0.8, 0.8])
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "baseline"
FIELDS = ["model", "config", "seed", "params", "epoch", "seconds", "metrics"]
EPOCHS = 3  # the suite's max_epochs (conf/config.yaml's trainer.max_epochs): a run with fewer is unfinished


@dataclass
class Run:
    params: dict[str, Any]
    epochs: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (seconds, metrics) per epoch


class Table:
    def __init__(self, runs: Mapping[tuple[str, str, int], Run], metric: str = "val_accuracy") -> None:
        self.runs, self.metric = dict(runs), metric

    def has(self, job) -> bool:
        run = self.runs.get((job.model, str(job.config), job.seed))
        return run is not None and len(run.epochs) >= EPOCHS

    def curve(self, model: str, config: str, seed: int = 0) -> list[float]:
        return [m[self.metric] for _, m in self.runs[(model, str(config), seed)].epochs]

    def seconds(self, model: str, config: str, seed: int = 0) -> list[float]:
        return [s for s, _ in self.runs[(model, str(config), seed)].epochs]

    def value(self, model: str, config: str, seed: int = 0) -> float:
        """A run's value as a study ranks it: its best epoch."""
        return max(self.curve(model, config, seed))

    def seeds(self, model: str, config: str) -> list[int]:
        return sorted(s for (m, c, s), run in self.runs.items()
                      if m == model and c == str(config) and len(run.epochs) >= EPOCHS)

    def seed_mean(self, model: str, config: str) -> float:
        return statistics.mean(self.value(model, config, s) for s in self.seeds(model, config))

    def configs(self, model: str | None = None, drawn_only: bool = True) -> list[tuple[str, str]]:
        """(model, config) of every finished seed-0 run; ``drawn_only`` leaves the baseline out."""
        return sorted({(m, c) for (m, c, s), run in self.runs.items() if s == 0 and len(run.epochs) >= EPOCHS
                       and (model is None or m == model) and not (drawn_only and c == BASELINE)},
                      key=lambda mc: (mc[0], mc[1].zfill(6)))

    def top(self, model: str, k: int) -> list[str]:
        """The ``k`` best drawn configs of ``model`` by their seed-0 value."""
        ranked = sorted(self.configs(model), key=lambda mc: -self.value(*mc))
        return [c for _, c in ranked[:k]]

    def models(self) -> list[str]:
        return sorted({m for m, _ in self.configs()})

    def params(self, model: str, config: str) -> dict[str, Any]:
        return self.runs[(model, str(config), 0)].params

    def oracle(self, model: str | None = None) -> tuple[tuple[str, str], float]:
        """The best config, the baseline included, by its mean over the training seeds recorded for it (the top
        configs have 3); a config with one seed only competes when no config has more (an early, partial table)."""
        candidates = self.configs(model, drawn_only=False)
        most = max(len(self.seeds(*mc)) for mc in candidates)
        best = max((mc for mc in candidates if len(self.seeds(*mc)) == most), key=lambda mc: self.seed_mean(*mc))
        return best, self.seed_mean(*best)

    def median(self, model: str | None = None) -> float:
        """The median drawn config's seed-0 value: normalized regret's zero point."""
        return statistics.median(self.value(*mc) for mc in self.configs(model))

    def epoch_seconds(self, model: str) -> float:
        """The model's mean seconds per epoch (training and validation, on the recording machine) over its seed-0
        runs: each recorded config once, as the replay plays them (the top configs' reruns on other seeds would
        weigh one config three times, and some ran with other work beside them)."""
        return statistics.mean(s for (m, _, seed), run in self.runs.items() if m == model and seed == 0
                               for s, _ in run.epochs)


def read_table(path: Path, metric: str = "val_accuracy") -> Table:
    """The CSV as ``record.py`` writes it; a run recorded twice (an interrupted one, run again) keeps its last rows."""
    runs: dict[tuple[str, str, int], Run] = {}
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                key = (row["model"], row["config"], int(row["seed"]))
                epoch = int(row["epoch"])
                if epoch == 1 or key not in runs:
                    runs[key] = Run(json.loads(row["params"]))
                runs[key].epochs.append((float(row["seconds"]), json.loads(row["metrics"])))
    return Table(runs, metric)
