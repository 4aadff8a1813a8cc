"""Bytes a study writes for checkpoints, before (full checkpoints) and after (compact ones + retention).

Two measurements, both in this run:
  1. per trial-epoch, all-MiniLM-L6-v2 after one real optimizer step, at freeze depth 0, 3 and 6: the
     checkpoint as trainers wrote it before (commit 7cfb607: full weights + tokenizer, optimizer state, a full
     ``best/``) against ``trainers.checkpoint.save`` now, for an epoch that improved (its weights written once,
     in ``best/``) and one that did not (latest + best);
  2. the default study (``experiment=sst2_minilm``, a smaller training subset so it fits a quick run): bytes
     every trial-epoch handed to Ray (measured in the trial), what the old layout would have written for the
     same trial-epochs (from 1.), and the checkpoint storage left when the study ends against the best model's
     full size. Goals: frozen layers never written; the finished study's storage <= 2x the best model + metrics.

    python -m bench.checkpoint_bytes [--rows 1000] [--skip-study] [--out bench/results/checkpoint_bytes.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import RESULTS, data_file, folder_bytes, minilm, write
from trainers import checkpoint, compact
from trainers.modeling import freeze, load_classifier, num_encoder_blocks
from trainers.optim import param_groups, warmup_then_linear_decay

DEPTHS = (0, 3, 6)


def per_epoch(depth: int, work: Path) -> dict:
    """Checkpoint bytes at ``depth``, old layout vs compact, after one optimizer step (Adam's moments exist)."""
    from transformers import AutoTokenizer

    model = minilm()
    tokenizer = AutoTokenizer.from_pretrained(model)
    classifier = load_classifier(model, ["negative", "positive"], pooling="mean")
    freeze(classifier.model, depth)
    base = compact.BaseModel.of(classifier, model)
    optimizer = torch.optim.AdamW(param_groups(classifier.model, 5e-5, 0.01, 0.9), lr=5e-5)
    scheduler = warmup_then_linear_decay(optimizer, 10, 0.1)
    batch = tokenizer(["a gripping film", "a dull mess"], return_tensors="pt", padding=True)
    F.cross_entropy(classifier(batch["input_ids"], batch["attention_mask"]), torch.tensor([1, 0])).backward()
    optimizer.step()
    scheduler.step()
    state = {"epoch": 1, "best": None, "epochs_without_improvement": 0}

    old = work / f"old_{depth}"  # the layout before compact checkpoints, written as it was
    classifier.save(old, tokenizer)
    torch.save({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, old / checkpoint.STATE_FILE)
    classifier.save(old / checkpoint.BEST_DIR, tokenizer)

    best = compact.save(classifier, work / f"best_{depth}", base)
    sizes = {}
    for improved in (True, False):
        folder = work / f"new_{depth}_{improved}"
        folder.mkdir()
        checkpoint.save(folder, classifier, base, optimizer, scheduler, state, best, {"improved": float(improved)})
        sizes[improved] = folder_bytes(folder)
    params = sum(p.numel() for p in classifier.model.parameters())
    trainable = sum(p.numel() for p in classifier.model.parameters() if p.requires_grad)
    row = {"freeze_depth": depth, "trainable_fraction": trainable / params, "old_bytes": folder_bytes(old),
           "new_bytes_improved": sizes[True], "new_bytes_not_improved": sizes[False],
           "frozen_bytes_written": _frozen_bytes_written(work / f"new_{depth}_False", base)}
    row["ratio_improved"] = row["new_bytes_improved"] / row["old_bytes"]
    row["ratio_not_improved"] = row["new_bytes_not_improved"] / row["old_bytes"]
    return row


def _frozen_bytes_written(folder: Path, base: compact.BaseModel) -> int:
    """Bytes of frozen parameters in a checkpoint's weight files (the goal: 0)."""
    from safetensors import safe_open

    frozen, total = set(base.frozen), 0
    for weights in folder.rglob(compact.WEIGHTS_FILE):
        with safe_open(str(weights), "pt") as f:
            total += sum(f.get_tensor(k).nbytes for k in f.keys() if k in frozen)
    return total


def default_study(rows: int, root: Path, per_depth: dict[int, int]) -> dict:
    """Runs the default study (smaller training subset) with trials that log every checkpoint's bytes."""
    from hpo import CheckpointStore, Registry, build_spec, compose, run_study

    log = root / "checkpoint_bytes.jsonl"
    spec = build_spec(compose(["experiment=sst2_minilm", f"data.train_limit={rows}", f"storage.root={root}",
                               f"data.train_path={data_file('train')}", f"data.validation_path={data_file('dev')}"]))
    outcome = run_study(spec, trainable=_counting(log), display="quiet")
    writes = [json.loads(line) for line in log.read_text().splitlines()]
    record = Registry.open(spec.storage.registry_url).require(spec.name)
    store = CheckpointStore(spec.storage.checkpoints)
    with store.full_model(record.best_checkpoint) as full:
        best_model_bytes = folder_bytes(full)
    left = folder_bytes(Path(spec.storage.checkpoints) / spec.name / "tune")
    old = sum(_old_bytes(w["freeze_depth"], per_depth) for w in writes)
    new = sum(w["bytes"] for w in writes)
    return {"status": outcome.status, "trial_epochs": len(writes), "rows": rows,
            "written_old_layout_bytes": old, "written_bytes": new, "written_ratio": new / old,
            "storage_at_end_bytes": left, "best_model_full_bytes": best_model_bytes,
            "storage_over_best_model": left / best_model_bytes,
            "mlflow_artifact_bytes": folder_bytes(root / "mlartifacts")}


def _old_bytes(depth: int, per_depth: dict[int, int]) -> int:
    """The old layout's bytes at ``depth``: measured at 0/3/6; other depths interpolated (it is linear in depth)."""
    if depth in per_depth:
        return per_depth[depth]
    low, high = max(d for d in per_depth if d < depth), min(d for d in per_depth if d > depth)
    return int(per_depth[low] + (per_depth[high] - per_depth[low]) * (depth - low) / (high - low))


def _counting(log: Path):
    """hpo's trial, with every checkpoint's bytes appended to ``log`` as Ray is handed it (in the worker): it
    instruments the trial function's reporter, so it reaches past hpo's public API to :mod:`hpo.study.trial`."""
    from hpo.study import trial

    def counting_trial(config, **kwargs):
        original = trial.RayReporter.report

        def report(self, metrics, checkpoint_dir):
            if checkpoint_dir is not None:
                line = {"freeze_depth": config["freeze_depth"], "epoch": metrics.get("epoch"),
                        "bytes": folder_bytes(checkpoint_dir), "improved": metrics.get("improved")}
                with log.open("a") as f:
                    f.write(json.dumps(line) + "\n")
            original(self, metrics, checkpoint_dir)

        trial.RayReporter.report = report
        try:
            trial.run_trial(config, **kwargs)
        finally:
            trial.RayReporter.report = original

    return counting_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000, help="training rows of the default study")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "checkpoint_bytes.json")
    args = parser.parse_args()
    result: dict = {"benchmark": "checkpoint_bytes", "model": "all-MiniLM-L6-v2",
                    "blocks": num_encoder_blocks(load_classifier(minilm(), ["a", "b"]).model)}
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        rows = [per_epoch(depth, Path(tmp)) for depth in DEPTHS]
    result["per_trial_epoch"] = rows
    print("freeze depth | trainable | old MB | new MB (improved / not) | new/old | frozen bytes written")
    for r in rows:
        print(f"{r['freeze_depth']:>12} | {r['trainable_fraction']:9.1%} | {r['old_bytes'] / 1e6:6.1f} | "
              f"{r['new_bytes_improved'] / 1e6:7.3f} / {r['new_bytes_not_improved'] / 1e6:7.3f} | "
              f"{r['ratio_improved']:.3f} / {r['ratio_not_improved']:.3f} | {r['frozen_bytes_written']}")
    if not args.skip_study:
        root = Path(tempfile.mkdtemp(prefix="hpo-bench-study-"))
        try:
            study = default_study(args.rows, root, {r["freeze_depth"]: r["old_bytes"] for r in rows})
        finally:
            shutil.rmtree(root, ignore_errors=True)
        result["default_study"] = study
        print(f"default study ({study['trial_epochs']} trial-epochs): written {study['written_bytes'] / 1e6:.0f} MB "
              f"vs {study['written_old_layout_bytes'] / 1e6:.0f} MB in the old layout = {study['written_ratio']:.3f}x; "
              f"storage at the end {study['storage_at_end_bytes'] / 1e6:.1f} MB = "
              f"{study['storage_over_best_model']:.2f}x the best model ({study['best_model_full_bytes'] / 1e6:.1f} MB)"
              f" (goal <= 2x); MLflow artifacts {study['mlflow_artifact_bytes'] / 1e6:.0f} MB")
    write(result, args.out)


if __name__ == "__main__":
    main()
