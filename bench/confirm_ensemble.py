"""The confirmation stage and the ensemble of top trials, measured on the search-quality benchmark (issue 13).

Setup: the search-quality benchmark's recorded hpo searches (``bench/results/search_quality.json``: all-MiniLM-L6-v2,
SST-2, 2,000 train rows, the full dev set, max length 64, 3 epochs per config, 12-epoch budget, search seeds 0..4).
For each of ``--searches`` of them, its ``--top`` best configs (by the value the search saw) are trained again,
each a real fine-tuning run of 3 epochs:

- on the search's own seed (the reproduction: the model the search kept, whose dev probabilities the ensemble
  averages), and
- on ``--seeds`` further seeds (``hpo.ranking.rerun_seeds``), whose mean is the confirmed value.

Prints per search: the optimism gap (search value of the search's best minus its confirmed mean), whether the
confirmed winner differs from the search's pick, and the ensemble's dev accuracy against the best single model's::

    .venv/bin/python -m bench.confirm_ensemble --out bench/results/confirm_ensemble.json     # about 35 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.search_quality import SETUP
from hpo import build_spec, compose, set_defaults
from hpo.ranking import rerun_seeds, summarize
from trainers import fine_tune, load_model, prepare_data
from trainers.heads import ClassificationHead
from trainers.loop import predict, validation_metrics
from trainers.metrics import classification_metrics
from trainers.objective import Objective

OBJECTIVE = Objective("val_accuracy", "max")


class _KeepBest:
    """fine_tune's reporter: the best epoch's accuracy and a copy of its compact model."""

    def __init__(self, keep: Path) -> None:
        self.keep, self.best = keep, None

    def report(self, metrics, checkpoint_dir) -> None:
        if metrics.get("improved"):
            self.best = float(metrics["val_accuracy"])
            shutil.rmtree(self.keep, ignore_errors=True)
            shutil.copytree(Path(checkpoint_dir) / "best", self.keep)


def train(base, params: dict, seed: int, data, keep: Path) -> float:
    reporter = _KeepBest(keep)
    fine_tune(dataclasses.replace(base, **params, seed=seed), data, reporter)
    return reporter.best


def one_search(run: dict, search_seed: int, top: int, seeds: int, base, data, work: Path) -> dict:
    ranked = sorted(run["detail"], key=lambda t: -max(t["curve"]))[:top]
    probs, reproduced, reruns = [], {}, {}
    for i, trial in enumerate(ranked):
        keep = work / f"config_{i}"
        reproduced[i] = train(base, trial["params"], search_seed, data, keep)
        logits, labels = predict(load_model(keep).eval(), data.validation, data.pad_token_id,
                                 128, torch.device("cpu"))
        probs.append(logits.softmax(-1))
        reruns[i] = [train(base, trial["params"], s, data, work / "rerun") for s in rerun_seeds(search_seed, seeds)]
    summary = summarize({i: max(t["curve"]) for i, t in enumerate(ranked)}, reruns, OBJECTIVE)
    ensemble = classification_metrics(ClassificationHead().combine([p.log() for p in probs]), labels)["val_accuracy"]
    best_single = validation_metrics(probs[0].log(), labels)["val_accuracy"]
    return {
        "search_seed": search_seed,
        "configs": [{"params": t["params"], "search_value": max(t["curve"]), "search_epochs": len(t["curve"]),
                     "reproduced": reproduced[i], "reruns": reruns[i]} for i, t in enumerate(ranked)],
        "search_pick": summary.search_best, "confirmed_winner": summary.winner,
        "winner_changed": summary.winner_changed, "optimism_gap": summary.optimism_gap,
        "confirmed_mean_of_search_pick": summary.config(summary.search_best).mean,
        "confirmed_mean_of_winner": summary.config(summary.winner).mean,
        "ensemble_accuracy": ensemble, "best_single_accuracy": best_single,
        "ensemble_gain": ensemble - best_single,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=3, help="how many of the recorded searches (seeds 0..)")
    parser.add_argument("--top", type=int, default=3, help="configs confirmed and ensembled per search")
    parser.add_argument("--seeds", type=int, default=2, help="further seeds per config")
    parser.add_argument("--rows", type=int, default=2000, help="train rows (fewer: a smoke run, not the benchmark)")
    parser.add_argument("--recorded", type=Path, default=Path("bench/results/search_quality.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/confirm_ensemble.json"))
    args = parser.parse_args()
    set_defaults()
    recorded = json.loads(args.recorded.read_text())
    spec = build_spec(compose([*SETUP, f"data.train_limit={args.rows}"]))
    data = prepare_data(spec.data.train_path, spec.data.validation_path, spec.model.name_or_path, max_length=64,
                        train_limit=args.rows, seed=0, cache_dir=spec.storage.cache_dir / "tokenized")
    base = dataclasses.replace(spec.trainer, max_length=64, max_epochs=3, num_threads=2)
    started, searches = time.perf_counter(), []
    for search_seed, run in enumerate(recorded["methods"]["hpo"]["runs"][: args.searches]):
        with tempfile.TemporaryDirectory(prefix="hpo-confirm-") as tmp:
            result = one_search(run, search_seed, args.top, args.seeds, base, data, Path(tmp))
        searches.append(result)
        print(f"RESULT search {search_seed}: gap {result['optimism_gap']:+.4f}, winner changed "
              f"{result['winner_changed']}, ensemble {result['ensemble_accuracy']:.4f} vs best single "
              f"{result['best_single_accuracy']:.4f} ({result['ensemble_gain']:+.4f})", flush=True)
        write(args, searches, started)


def write(args, searches: list[dict], started: float) -> None:
    mean = lambda key: statistics.fmean(s[key] for s in searches)
    out = {"setup": {"searches": len(searches), "top": args.top, "seeds": args.seeds, "train_rows": args.rows,
                     "max_length": 64, "epochs": 3, "date": time.strftime("%Y-%m-%d"),
                     "command": "python -m bench.confirm_ensemble " + " ".join(
                         f"--{k} {v}" for k, v in (("searches", args.searches), ("top", args.top),
                                                   ("seeds", args.seeds)))},
           "summary": {"optimism_gap_mean": mean("optimism_gap"),
                       "winner_changed": sum(s["winner_changed"] for s in searches),
                       "confirmed_gain_of_switching_mean": statistics.fmean(
                           s["confirmed_mean_of_winner"] - s["confirmed_mean_of_search_pick"] for s in searches),
                       "ensemble_gain_mean": mean("ensemble_gain"), "wall_s": time.perf_counter() - started},
           "searches": searches}
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
