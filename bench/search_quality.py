"""The real side-by-side: what each way of tuning finds for the same compute, counted in training epochs.

Setup (issue 9): all-MiniLM-L6-v2, SST-2, the 2,000 train rows ``random.Random(0).sample`` picks, the full dev set
(872), max length 64, 2 threads, one trial at a time, 3 epochs per config. Methods, each a real fine-tuning run:

- ``hpo``: hpo's default study (its sampler, scheduler and space from ``conf/``), ``--seeds`` search seeds,
  ended by ``study.epoch_budget``;
- ``random_fifo``: random search without early stopping, through hpo (``sampler=random scheduler=fifo``);
- ``grid``: the BERT paper's grid (lr {2e-5, 3e-5, 5e-5} x batch {16, 32}, full fine-tuning), a plain loop;
- ``hf``: Hugging Face ``Trainer.hyperparameter_search(backend="optuna")``, lr 1e-5..2e-4 log, batch {16, 32,
  64}, weight decay 0..0.1, 4 trials of 3 epochs (12 epochs; HF's own model head and defaults);
- ``top_k``: 8 random configs from hpo's default space trained one epoch each, the best 2 continued to 3 epochs.

Each gives an anytime curve (best dev accuracy so far against epochs spent, in the order they were spent). Prints
``epochs_to_grid_best(hpo) / epochs(grid)`` and ``best(hpo) - best(hf)`` at HF's budget, writes JSON and a PNG::

    .venv/bin/python -m bench.search_quality --out bench/results/search_quality.json        # about 70 minutes
    .venv/bin/python -m bench.search_quality --quick --out /tmp/quick.json                   # `make bench-quick`
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

import optuna

from bench.replay.run import spread, trial_curves
from bench.replay.table import anytime, best_at_budget, epochs_to_reach
from hpo import build_spec, compose, set_defaults
from trainers import TrainConfig, fine_tune, prepare_data

SETUP = ["experiment=sst2_minilm", "study.max_concurrent=1", "resources.cpu=2", "trainer.max_length=64",
         "tracking.register_best=false", "study.num_samples=100",  # the epoch budget ends each study
         "data.stratify=false"]  # the rows random.Random(0).sample picks, as every recorded run used
BERT_DEFAULTS = {"freeze_depth": 0, "weight_decay": 0.01, "dropout": 0.1, "warmup_ratio": 0.1, "layer_lr_decay": 1.0}
GRID = [{"learning_rate": lr, "batch_size": b, **BERT_DEFAULTS} for lr in (2e-5, 3e-5, 5e-5) for b in (16, 32)]


@dataclasses.dataclass
class Run:
    """One search run: its anytime curve and its wall time."""

    curve: list[float]
    wall_s: float
    detail: list = dataclasses.field(default_factory=list)


def hpo_study(root: Path, name: str, seed: int, budget: int, train_rows: int, *overrides: str) -> Run:
    from hpo import run_study

    spec = build_spec(compose([*SETUP, f"data.train_limit={train_rows}", f"study.name={name}", f"study.seed={seed}",
                               f"study.epoch_budget={budget}", f"storage.root={root}", *overrides]))
    outcome = run_study(spec)
    trials = trial_curves(spec)
    return Run(anytime([c for _, c in trials])[:budget], outcome.wall_s, [{"params": p, "curve": c}
                                                                         for p, c in trials])


class _Curve:
    """fine_tune's reporter: keeps each epoch's accuracy; with ``pause_after`` keeps that epoch's checkpoint
    (to continue from) and stops the run."""

    def __init__(self, keep: Path | None = None, pause_after: int | None = None) -> None:
        self.values: list[float] = []
        self.keep, self.pause_after = keep, pause_after

    def report(self, metrics, checkpoint_dir) -> None:
        self.values.append(float(metrics["val_accuracy"]))
        if self.pause_after == int(metrics["epoch"]):
            shutil.copytree(checkpoint_dir, self.keep)
            raise _Paused


class _Paused(Exception):
    pass


def plain_runs(data, base: TrainConfig, configs: list[dict]) -> Run:
    """The configs trained one after another to ``base.max_epochs``, as a hand-written loop would."""
    started, curves = time.perf_counter(), []
    for params in configs:
        reporter = _Curve()
        fine_tune(dataclasses.replace(base, **params), data, reporter)
        curves.append(reporter.values)
    return Run(anytime(curves), time.perf_counter() - started, [{"params": p, "curve": c}
                                                                for p, c in zip(configs, curves, strict=True)])


def top_k_after_one_epoch(data, base: TrainConfig, space: dict, n: int, k: int, seed: int, work: Path) -> Run:
    """``n`` random configs one epoch each (on the full-length LR schedule), then the best ``k`` continued."""
    started, first = time.perf_counter(), []
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = [sampler_study.ask(space).params for _ in range(n)]
    for i, params in enumerate(configs):
        reporter = _Curve(work / f"config_{i}", pause_after=1)
        try:
            fine_tune(dataclasses.replace(base, **params), data, reporter)
        except _Paused:
            pass
        first.append(reporter.values[0])
    spent = list(first)
    kept = sorted(range(n), key=lambda i: -first[i])[:k]
    for i in kept:
        reporter = _Curve()
        fine_tune(dataclasses.replace(base, **configs[i], resume_from=str(work / f"config_{i}")), data, reporter)
        spent += reporter.values
    detail = [{"params": p, "epoch_1": v, "continued": i in kept}
              for i, (p, v) in enumerate(zip(configs, first, strict=True))]
    return Run(anytime([[v] for v in spent]), time.perf_counter() - started, detail)


def hf_search(model_path: str, paths: tuple[str, str], train_rows: int, max_length: int, trials: int,
              seed: int) -> Run:
    """``Trainer.hyperparameter_search`` as its documentation shows it, on the same rows and budget."""
    import numpy as np
    import torch
    import transformers as tf

    from trainers.csv_files import read_csv
    from trainers.data import subsample

    torch.set_num_threads(2)  # as every other method
    tokenizer = tf.AutoTokenizer.from_pretrained(model_path)

    def rows(path: str, limit: int | None) -> list[dict]:
        texts, labels = subsample(*read_csv(path), limit, 0)
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        return [{"input_ids": i, "attention_mask": a, "labels": int(y)}
                for i, a, y in zip(encoded["input_ids"], encoded["attention_mask"], labels, strict=True)]

    train, dev, curve = rows(paths[0], train_rows), rows(paths[1], None), []

    class Record(tf.TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            curve.append(metrics["eval_accuracy"])

    trainer = tf.Trainer(
        model_init=lambda *_: tf.AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2),
        args=tf.TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-search-"), num_train_epochs=3,
                                  eval_strategy="epoch", save_strategy="no", logging_strategy="no",
                                  per_device_eval_batch_size=128, seed=seed, report_to=[], use_cpu=True,
                                  disable_tqdm=True),
        train_dataset=train, eval_dataset=dev, data_collator=tf.DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
        callbacks=[Record()],
    )
    started = time.perf_counter()
    trainer.hyperparameter_search(
        hp_space=lambda t: {"learning_rate": t.suggest_float("learning_rate", 1e-5, 2e-4, log=True),
                            "per_device_train_batch_size": t.suggest_categorical("per_device_train_batch_size",
                                                                                 [16, 32, 64]),
                            "weight_decay": t.suggest_float("weight_decay", 0.0, 0.1)},
        compute_objective=lambda metrics: metrics["eval_accuracy"], n_trials=trials, direction="maximize",
        backend="optuna", sampler=optuna.samplers.TPESampler(seed=seed))
    return Run(anytime([[v] for v in curve]), time.perf_counter() - started)


def summary(runs: list[Run], budgets: list[int], target: float) -> dict:
    reached = [epochs_to_reach(r.curve, target) for r in runs]
    return {"best_at": {b: spread([best_at_budget(r.curve, b) for r in runs]) for b in budgets},
            "epochs_to_grid_best": reached, "wall_s": spread([r.wall_s for r in runs]),
            "epochs_spent": spread([len(r.curve) for r in runs]),
            "runs": [dataclasses.asdict(r) for r in runs]}


def ratio_line(hpo: dict, grid_epochs: int) -> str:
    reached = [e for e in hpo["epochs_to_grid_best"] if e is not None]
    if not reached:
        return "epochs_to_grid_best(hpo) / epochs(grid): not reached by any seed within its budget"
    ratios = [e / grid_epochs for e in reached]
    return (f"epochs_to_grid_best(hpo) / epochs(grid) = {statistics.mean(ratios):.3f} "
            f"(sd {statistics.pstdev(ratios):.3f}, {min(ratios):.3f}..{max(ratios):.3f}; "
            f"{len(reached)} of {len(hpo['epochs_to_grid_best'])} seeds reached it)")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, method in results["methods"].items():
        curves = [r["curve"] for r in method["runs"]]
        length = max(len(c) for c in curves)
        padded = [c + [c[-1]] * (length - len(c)) for c in curves]
        mean = [statistics.mean(col) for col in zip(*padded, strict=True)]
        x = range(1, length + 1)
        line, = ax.plot(x, mean, marker=".", label=f"{name} ({len(curves)} run{'s' * (len(curves) > 1)})")
        if len(curves) > 1:
            ax.fill_between(x, [min(c) for c in zip(*padded, strict=True)],
                            [max(c) for c in zip(*padded, strict=True)],
                            color=line.get_color(), alpha=0.15)
    ax.axhline(results["grid_best"], color="grey", linestyle="--", label=f"grid's best {results['grid_best']:.4f}")
    ax.set(xlabel="epochs spent (one epoch = the training rows once)", ylabel="best dev accuracy so far",
           title="Anytime curves: mean over seeds, band = min..max", ylim=(0.75, None))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="search seeds of hpo and random_fifo")
    parser.add_argument("--budget", type=int, default=12, help="hpo's epoch budget (HF's 12; the grid spends 18)")
    parser.add_argument("--random-budget", type=int, default=12, help="random_fifo's epoch budget (HF's 12)")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--methods", default="grid,hpo,random_fifo,top_k,hf")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 1,000 train rows")
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_quality.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train_rows = 2, 1000
    set_defaults()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods = args.methods.split(",")

    spec = build_spec(compose([*SETUP, f"data.train_limit={args.train_rows}"]))
    data = prepare_data(spec.data.train_path, spec.data.validation_path, spec.model.name_or_path, max_length=64,
                        train_limit=args.train_rows, seed=0, cache_dir=spec.storage.cache_dir / "tokenized")
    base = dataclasses.replace(spec.trainer, max_length=64, max_epochs=3, num_threads=2, seed=0)
    results = {"setup": {"train_rows": args.train_rows, "dev_rows": len(data.validation), "max_length": 64,
                         "threads": 2, "epochs_per_config": 3, "seeds": args.seeds, "hpo_budget": args.budget,
                         "random_budget": args.random_budget, "space": spec.space.describe(),
                         "date": time.strftime("%Y-%m-%d"), "command": " ".join(__import__("sys").argv)},
               "methods": {}}
    if args.out.is_file():  # a run of some methods keeps the others' results (and the grid's best) from the file
        earlier = json.loads(args.out.read_text())
        results["methods"] = {k: v for k, v in earlier["methods"].items() if k not in methods}
        results["grid_best"] = earlier.get("grid_best", 0.828)

    def done(name: str, runs: list[Run]) -> None:
        results["methods"][name] = summary(runs, [3, 6, 9, 12, 18], results["grid_best"])
        results["methods"][name]["setup"] = dict(results["setup"])  # each method's own run (date, command)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        at = results["methods"][name]["best_at"]
        print(f"RESULT {name}: " + "  ".join(f"@{b}: {at[b]['mean']:.4f}" for b in at), flush=True)

    if "grid" in methods:
        runs_grid = plain_runs(data, base, GRID)
        results["grid_best"] = max(runs_grid.curve)
        done("grid", [runs_grid])
    results.setdefault("grid_best", 0.828)  # no grid run: issue 9's measurement
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        root = Path(tmp)
        if "hpo" in methods:
            done("hpo", [hpo_study(root, f"hpo_{s}", s, args.budget, args.train_rows) for s in range(args.seeds)])
        if "hpo_methods" in methods:  # issue 13: full / freeze / LoRA as a search dimension (search=methods)
            done("hpo_methods", [hpo_study(root, f"methods_{s}", s, args.budget, args.train_rows, "search=methods")
                                 for s in range(args.seeds)])
        if "random_fifo" in methods:
            done("random_fifo", [hpo_study(root, f"random_{s}", s, args.random_budget, args.train_rows,
                                           "sampler=random", "scheduler=fifo") for s in range(args.seeds)])
        if "top_k" in methods:
            done("top_k", [top_k_after_one_epoch(data, base, spec.space.distributions, 8, 2, 0, root / "top_k")])
    if "hf" in methods:
        paths = (str(spec.data.train_path), str(spec.data.validation_path))
        done("hf", [hf_search(spec.model.name_or_path, paths, args.train_rows, 64, trials=4, seed=0)])

    m = results["methods"]
    if "hpo" in m:
        print(ratio_line(m["hpo"], 18))
    if "hpo" in m and "hf" in m:
        gap = m["hpo"]["best_at"][12]["mean"] - m["hf"]["best_at"][12]["mean"]
        print(f"best(hpo) - best(hf) at 12 epochs = {gap:+.4f} (hpo sd {m['hpo']['best_at'][12]['sd']:.4f})")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
