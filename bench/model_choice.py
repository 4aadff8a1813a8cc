"""Does searching the pretrained model find a better model for the same compute? (issue 13, part 6)

Arms, each a real hpo study on the search-quality setup (SST-2, the 1,000 or 2,000 train rows
``random.Random(0).sample`` picks, the full dev set, max length 64, one trial at a time on 2 threads, ASHA, TPE),
each given the same wall-clock budget (``study.time_budget_s``):

- ``default``: all-MiniLM-L6-v2 only (``conf/search/finetune.yaml``);
- ``models``: ``search=models``, MiniLM-L6 or its first 3 blocks (``minilm_l3``), each with its own prior, the
  sampler's own first draws;
- ``models_mpnet``: the same plus all-mpnet-base-v2 (4-5x MiniLM-L6's seconds per epoch here);
- ``models_shipped``: ``search=models`` as it shipped when measured: MiniLM-L6 or MPNet, each model's centre trained
  first (it now starts from the suite's portfolio over both models: ``models_portfolio``);
- ``models_grouped``: ``models`` with TPE's ``group=True`` (each model's parameters modelled jointly).

Compute is counted as the trials' own training-and-validation seconds (``epoch_seconds``, measured in the trial),
summed in the order they ran; each arm's anytime curve is its best dev accuracy against those seconds. Seeds are
interleaved across arms so a slower stretch of the machine falls on every arm alike. Prints each arm's best at a
few compute points and ``best(arm) - best(default)``::

    .venv/bin/python -m bench.model_choice --seeds 2 --budget-s 600 --out bench/results/model_choice.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna

from bench.replay.run import spread
from bench.search_quality import SETUP
from hpo import Registry, build_spec, compose, set_defaults

_L6_L3 = "search.model={choices: [minilm_l6, minilm_l3]}"
ARMS = {
    "default": [],
    # as first measured: the sampler's own first draws (search=models now starts from the portfolio)
    "models": ["search=models", _L6_L3, "search.first_trial=sampler"],
    "models_mpnet": ["search=models", "search.model={choices: [minilm_l6, minilm_l3, mpnet_base]}",
                     "search.first_trial=sampler"],
    # search=models as it shipped when measured: MiniLM-L6 or MPNet, each model's centre first, then TPE
    "models_shipped": ["search=models", "search.first_trial=midpoint"],
    # search=models as it ships now: the suite's portfolio over both models first, then TPE
    "models_portfolio": ["search=models"],
    # TPE over a conditional space as Optuna advises: each model's parameters modelled jointly (group=True)
    "models_grouped": ["search=models", _L6_L3, "search.first_trial=sampler", "+sampler.group=true"],
}


def run_arm(root: Path, arm: str, seed: int, budget_s: float, train_rows: int) -> dict:
    """One study of ``arm``; its trials in the order they ran, each with its model, curve and epoch seconds."""
    from mlflow import MlflowClient

    from hpo import run_study

    spec = build_spec(compose([*SETUP, f"data.train_limit={train_rows}", f"study.name={arm}_{seed}",
                               f"study.seed={seed}", f"study.time_budget_s={budget_s}", f"storage.root={root}",
                               *ARMS[arm]]))
    outcome = run_study(spec, display="quiet")
    client = MlflowClient(spec.storage.tracking_uri)
    trials = []
    for t in sorted(Registry(spec.storage.registry_url).trials(spec.name), key=lambda t: t.number):
        seconds = {m.step: m.value for m in client.get_metric_history(t.mlflow_run_id, "epoch_seconds")} \
            if t.mlflow_run_id else {}
        curve = [t.values[e] for e in sorted(t.values)]
        trials.append({"model": (t.params or {}).get("model", "minilm_l6"), "curve": curve,
                       "epoch_seconds": [seconds.get(e, 0.0) for e in sorted(t.values)], "params": t.params})
    return {"seed": seed, "wall_s": outcome.wall_s, "trials": trials}


def timeline(run: dict) -> list[tuple[float, float]]:
    """(compute seconds spent so far, dev accuracy) for every epoch, in the order they ran."""
    spent, points = 0.0, []
    for trial in run["trials"]:
        for value, seconds in zip(trial["curve"], trial["epoch_seconds"], strict=True):
            spent += seconds
            points.append((spent, value))
    return points


def best_within(run: dict, seconds: float) -> float | None:
    values = [v for spent, v in timeline(run) if spent <= seconds]
    return max(values) if values else None


def summarize(runs: list[dict], points: list[float]) -> dict:
    by_model: dict[str, dict] = {}
    for run in runs:
        for trial in run["trials"]:
            entry = by_model.setdefault(trial["model"], {"trials": 0, "epochs": 0, "seconds": 0.0, "best": 0.0})
            entry["trials"] += 1
            entry["epochs"] += len(trial["curve"])
            entry["seconds"] += sum(trial["epoch_seconds"])
            entry["best"] = max([entry["best"], *trial["curve"]])
    best = {str(p): spread([b for r in runs if (b := best_within(r, p)) is not None] or [0.0]) for p in points}
    return {"best_within_s": best, "by_model": by_model, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=600.0, help="each study's wall-clock budget")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--arms", default="default,models,models_mpnet")
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_choice.json"))
    args = parser.parse_args()
    set_defaults()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    arms = args.arms.split(",")
    points = [round(args.budget_s * f) for f in (0.25, 0.5, 0.75, 0.9)]
    results = {"setup": {"train_rows": args.train_rows, "budget_s": args.budget_s, "seeds": args.seeds,
                         "arms": {a: ARMS[a] for a in arms}, "compute_points_s": points,
                         "date": time.strftime("%Y-%m-%d"), "command": " ".join(__import__("sys").argv)},
               "arms": {}}
    if args.out.is_file():  # a run of some arms keeps the other arms' results from the file
        earlier = json.loads(args.out.read_text())["arms"]
        results["arms"] = {k: v for k, v in earlier.items() if k not in arms}
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="hpo-models-") as tmp:
        for seed in range(args.seeds):  # interleaved: a slow stretch of the machine falls on every arm
            for arm in arms:
                runs[arm].append(run_arm(Path(tmp), arm, seed, args.budget_s, args.train_rows))
                results["arms"][arm] = summarize(runs[arm], points)
                args.out.write_text(json.dumps(results, indent=1) + "\n")
                print(f"{arm} after seed {seed}, mean so far: " + "  ".join(
                    f"<={p}s {results['arms'][arm]['best_within_s'][str(p)]['mean']:.4f}" for p in points), flush=True)
    for arm in results["arms"]:
        at = results["arms"][arm]["best_within_s"]
        line = "  ".join(f"<={p}s {at[str(p)]['mean']:.4f}±{at[str(p)]['sd']:.4f}" for p in points)
        print(f"RESULT {arm}: {line}  models: {results['arms'][arm]['by_model']}")
        if arm != "default" and "default" in results["arms"]:
            base = results["arms"]["default"]["best_within_s"]
            print(f"  best({arm}) - best(default): " + "  ".join(
                f"<={p}s {at[str(p)]['mean'] - base[str(p)]['mean']:+.4f}" for p in points))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
