"""Does distilling a study's large winner into a small model keep its accuracy at the small model's latency? (issue 24)

Arms, real hpo studies on one dataset, all in this run, one trial at a time on 2 threads:

- ``teacher``: a ``search=models`` study (MiniLM-L6 or all-mpnet-base-v2; EfficientNet-Lite0 or -Lite2 for images),
  ASHA with rungs per model (``scheduler=asha_per_model``); its registered champion is the teacher;
- ``plain``: the small model alone (``model=`` it, the default space), ``--trials`` trials, on each seed;
- ``distilled``: the same study composed as ``hpo distill`` composes it (``hpo.models.distill.distill_config``: the
  teacher study's config, the student model, ``distill.teacher`` its champion, temperature and alpha searched),
  the same trials, seeds and scheduler.

Equal student compute: both student arms run the same number of trials of the same model under the same scheduler
(their summed ``epoch_seconds`` are printed). With ``--unlabeled-rows U`` the distilled arm also learns, from the
teacher alone, U training texts the labelled subset left out (``data.unlabeled_path``: the transfer set where
distillation gains most; ``--unlabeled-file``: a shipped one, such as mrpc's); the plain arm then trains
``(train + U) / train`` times the epochs, so that both arms take the same optimizer steps; the teacher's outputs are
computed once and cached (its seconds are counted apart). Prints per seed and over seeds: each arm's best
validation value, the ``latency_ms`` and ``model_mb`` its best trial measured, the gap recovered = (distilled -
plain) / (teacher - plain), and the temperature and alpha the distilled search chose::

    .venv/bin/python -m bench.distill --dataset sst2 --seeds 3 --trials 6 --out bench/results/distill.json
    .venv/bin/python -m bench.distill --dataset sst2 --seeds 3 --trials 4 --unlabeled-rows 2000 \
        --out bench/results/distill-unlabeled.json
    .venv/bin/python -m bench.distill --seeds 3 --trials 4 --unlabeled-rows 2000 --root /tmp/distill-unl \
        --out bench/results/distill-unlabeled-full-weight.json   # the teacher study the run before left there
    .venv/bin/python -m bench.distill --dataset mrpc --seeds 3 --trials 4 --unlabeled-file data/mrpc/unlabeled.csv.gz \
        --out bench/results/distill-mrpc.json
    .venv/bin/python -m bench.distill --seeds 3 --trials 4 --unlabeled-rows 8000 --root /tmp/distill-unl \
        --out bench/results/distill-unlabeled-8000.json
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from bench.common import machine, write
from bench.search_quality import SETUP
from bench.suite.datasets import SUITE
from hpo import Registry, StudyStatus, build_spec, compose, run_study
from hpo.models.distill import distill_config
from hpo.reporting._distillation import study_row
from trainers.csv_files import read_columns
from trainers.data import subset_rows

ONE_AT_A_TIME = ["study.max_concurrent=1", "resources.cpu=2"]
TEXT = ("minilm_l6", "mpnet_base")
IMAGES = ("efficientnet_lite0", "efficientnet_lite2")


def dataset_overrides(name: str, train_rows: int) -> tuple[list[str], tuple[str, str]]:
    """A study of ``name`` (``sst2``: the search-quality setup, the default experiment's rows; else a suite dataset)
    and its (student, teacher) models."""
    if name == "sst2":
        return [*SETUP, f"data.train_limit={train_rows}"], TEXT
    dataset = SUITE[name]
    return [*dataset.overrides, *ONE_AT_A_TIME], IMAGES if "task=image_classification" in dataset.overrides else TEXT


def run_or_resume(spec, registry: Registry) -> None:
    """A study the ``--root`` already holds is resumed, or kept once complete: a stopped bench goes on where it was,
    and a run with more ``--seeds`` adds seeds to the ones before."""
    record = registry.get(spec.name)
    if record is None or record.status != StudyStatus.COMPLETED:
        run_study(spec, resume=record is not None, display="quiet")


def epoch_seconds(tracking_uri: str, registry: Registry, name: str) -> float:
    """The study's trials' training-and-validation seconds, all epochs."""
    client = MlflowClient(tracking_uri)
    return sum(m.value for t in registry.trials(name) if t.mlflow_run_id
               for m in client.get_metric_history(t.mlflow_run_id, "epoch_seconds"))


def transfer_set(spec, rows: int, out: Path) -> Path:
    """``rows`` texts of the study's training file that its labelled subset (``data.train_limit``) left out, without
    their labels, as a CSV for ``data.unlabeled_path``."""
    data, source = spec.data, spec.data.source(spec.study.seed)  # the limits' seed as the study resolves it
    names = [c for c in (data.columns["text"], data.columns.get("text_pair")) if c]
    *texts, labels = read_columns(data.train_path, [*names, data.columns["label"]])
    taken = set(subset_rows(labels, source.train_limit, source.seed, source.stratify))
    left = [i for i in range(len(labels)) if i not in taken]
    if len(left) < rows:
        raise SystemExit(f"--unlabeled-rows {rows}: the training file holds {len(left)} rows beyond the labelled ones")
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows([column[i] for column in texts] for i in random.Random(1).sample(left, rows))
    return out


def arm_result(spec, registry: Registry, role: str) -> dict:
    record = registry.require(spec.name)
    row = study_row(registry, spec.storage.tracking_uri, record, role)
    return {"study": spec.name, "model": row.model, "trial": row.trial, "metrics": row.metrics,
            "params": record.best_params,
            "epoch_seconds": epoch_seconds(spec.storage.tracking_uri, registry, spec.name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2", choices=sorted(SUITE))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=6, help="trials per student study")
    parser.add_argument("--teacher-trials", type=int, default=4)
    parser.add_argument("--train-rows", type=int, default=2000, help="sst2 only: training rows")
    parser.add_argument("--unlabeled-rows", type=int, default=0,
                        help="training texts beyond the labelled ones that the distilled arm learns from the teacher")
    parser.add_argument("--unlabeled-file", type=Path,
                        help="instead: this CSV of texts without labels (e.g. data/mrpc/unlabeled.csv.gz)")
    parser.add_argument("--root", help="keep the studies here (default: a temporary folder); a teacher study "
                        "already there is reused, a student study resumed (or kept, once complete)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    base, (student, teacher_model) = dataset_overrides(args.dataset, args.train_rows)
    with tempfile.TemporaryDirectory(prefix="hpo-bench-distill-") as tmp:
        root = Path(args.root or tmp).resolve()
        started = time.monotonic()
        teacher_spec = build_spec(compose([
            *base, f"storage.root={root}", "study.name=teacher", "search=models",
            f"search.model={{choices: [{student}, {teacher_model}]}}", "scheduler=asha_per_model",
            f"study.num_samples={args.teacher_trials}", "tracking.register_best=true", "study.seed=0"]))
        registry = Registry.open(teacher_spec.storage.registry_url)
        if registry.get("teacher") is None:  # a --root that holds it: the teacher does not depend on the arms
            run_study(teacher_spec, display="quiet")
        teacher = arm_result(teacher_spec, registry, "teacher")
        print(f"teacher: {teacher['model']} {teacher['metrics']} ({time.monotonic() - started:.0f} s)", flush=True)
        extra, longer = [], []
        unlabeled = args.unlabeled_file.resolve() if args.unlabeled_file else \
            transfer_set(teacher_spec, args.unlabeled_rows, root / "unlabeled.csv") if args.unlabeled_rows else None
        if unlabeled:
            data = teacher_spec.data
            labelled = data.train_limit or len(read_columns(data.train_path, [data.columns["label"]])[0])
            args.unlabeled_rows = len(read_columns(unlabeled, [data.columns["text"]])[0])
            extra = [f"data.unlabeled_path={unlabeled}"]
            epochs = round(teacher_spec.trainer.max_epochs * (labelled + args.unlabeled_rows) / labelled)
            longer = [f"trainer.max_epochs={epochs}"]
        seeds = []
        for seed in range(args.seeds):
            common = [f"study.num_samples={args.trials}", f"study.seed={seed}"]
            tag = f"u{args.unlabeled_rows}_{seed}"  # several runs can share a --root (and its teacher)
            plain_spec = build_spec(compose([*base, f"storage.root={root}", f"model={student}",
                                             f"study.name=plain_{tag}", *common, *longer]))
            run_or_resume(plain_spec, registry)
            distilled_spec = build_spec(distill_config(registry.require("teacher"), student, overrides=[
                f"study.name=distilled_{tag}", *common, *extra]))
            run_or_resume(distilled_spec, registry)
            plain, distilled = arm_result(plain_spec, registry, "plain"), arm_result(distilled_spec, registry, "dist")
            seeds.append({"seed": seed, "plain": plain, "distilled": distilled})
            print(f"seed {seed}: plain {plain['metrics']}, distilled {distilled['metrics']} "
                  f"(T {distilled['params'].get('distill_temperature')}, alpha "
                  f"{distilled['params'].get('distill_alpha')})", flush=True)
        result = summarize(args, teacher, seeds)
        result["wall_s"] = time.monotonic() - started
    write(result, args.out)


def summarize(args: argparse.Namespace, teacher: dict, seeds: list[dict]) -> dict:
    metric = next(iter(teacher["metrics"]))

    def values(arm: str, key: str = metric) -> list[float]:
        return [s[arm]["metrics"].get(key, float("nan")) for s in seeds]

    def mean_sd(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.4f} +- {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"

    top = teacher["metrics"][metric]
    recovered = [(d - p) / (top - p) if top != p else float("nan")
                 for p, d in zip(values("plain"), values("distilled"), strict=True)]
    of_means = (statistics.mean(values("distilled")) - statistics.mean(values("plain"))) / \
        (top - statistics.mean(values("plain")))
    print(f"\n{args.dataset}: {args.seeds} seeds, {args.trials} trials per student study, "
          f"{args.unlabeled_rows} unlabeled rows")
    print(f"| arm | {metric} | latency_ms | model_mb | student epoch s |\n|---|---|---|---|---|")
    print(f"| teacher ({teacher['model']}) | {top:.4f} | {teacher['metrics'].get('latency_ms', float('nan')):.2f} | "
          f"{teacher['metrics'].get('model_mb', float('nan')):.1f} | - |")
    for arm in ("plain", "distilled"):
        print(f"| {arm} ({seeds[0][arm]['model']}) | {mean_sd(values(arm))} | {mean_sd(values(arm, 'latency_ms'))} | "
              f"{statistics.mean(values(arm, 'model_mb')):.1f} | "
              f"{statistics.mean(s[arm]['epoch_seconds'] for s in seeds):.0f} |")
    print(f"gap recovered: {of_means:.0%} of the mean gap (per seed: {', '.join(f'{r:.0%}' for r in recovered)}); "
          "goal >= 50%")
    latency = statistics.mean(values("distilled", "latency_ms")) / teacher["metrics"].get("latency_ms", float("nan"))
    print(f"latency: distilled / teacher = {latency:.2f}; distilled / plain = "
          f"{statistics.mean(values('distilled', 'latency_ms')) / statistics.mean(values('plain', 'latency_ms')):.2f}")
    chosen = [(s["distilled"]["params"].get("distill_temperature"), s["distilled"]["params"].get("distill_alpha"))
              for s in seeds]
    print("T, alpha chosen: " + "; ".join(f"{t:.2f}, {a:.2f}" for t, a in chosen if t is not None and a is not None))
    return {"machine": machine(), "dataset": args.dataset, "seeds": args.seeds, "trials": args.trials,
            "unlabeled_rows": args.unlabeled_rows,
            "teacher": teacher, "per_seed": seeds, "gap_recovered_of_means": of_means,
            "gap_recovered_per_seed": recovered, "latency_ratio_distilled_over_teacher": latency}


if __name__ == "__main__":
    main()
