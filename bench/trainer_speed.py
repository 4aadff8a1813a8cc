"""Training speed of an hpo trial against a bare PyTorch loop, at freeze depth 0, half and all.

For each depth, in this run and alternated (so drift in clocks or load hits both alike):
  * ``trainer``: ``trainers.fine_tune``, what every trial runs (dynamic padding and batching on the fly,
    layer-wise AdamW groups, micro-batching, gradient clipping, LR schedule), examples/s of its last epoch's
    training loop (evaluation and checkpoints are outside that timer);
  * ``bare``: the same model, frozen layers, batches, sequence length, threads, precision and optimizer groups
    in a minimal forward/backward/step loop over batches built before the timer starts.
Ratios printed: trainer / bare at each depth (goal >= 0.97 on CPU, >= 0.95 on a GPU), and the trainer's
all-frozen / none-frozen speed (goal >= 2: no backward through frozen layers, no state for them).

    python -m bench.trainer_speed [--rows 512] [--repeats 3] [--out bench/results/trainer_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import RESULTS, data_file, minilm, write
from trainers import TrainConfig, fine_tune, prepare_data
from trainers.batching import batches
from trainers.data import PreparedData
from trainers.device import autocast_for, pick_device, to_device
from trainers.modeling import freeze, load_classifier, num_encoder_blocks
from trainers.optim import param_groups


class _Rates:
    def __init__(self) -> None:
        self.history: list[dict] = []

    def report(self, metrics, checkpoint_dir) -> None:
        self.history.append(dict(metrics))


def settings(model: str, depth: int, batch_size: int, epochs: int, threads: int | None) -> TrainConfig:
    return TrainConfig(model_name_or_path=model, batch_size=batch_size, max_epochs=epochs, freeze_depth=depth,
                       pooling="mean", learning_rate=5e-5, layer_lr_decay=0.9, num_threads=threads)


def trainer_rate(config: TrainConfig, data: PreparedData) -> float:
    """Examples/s of ``fine_tune``'s training loop in its last epoch (warm caches, no first-step costs)."""
    rates = _Rates()
    fine_tune(config, data, rates)
    return rates.history[-1]["train_examples_per_s"]


def bare_rate(config: TrainConfig, data: PreparedData) -> float:
    """The floor: the same model, frozen layers, batches, precision and optimizer groups, and nothing else: no
    on-the-fly batching, micro-batching, clipping, LR schedule, evaluation or checkpoints."""
    torch.manual_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = pick_device()
    classifier = load_classifier(config.model_name_or_path, data.label_names, pooling=config.pooling,
                                 dropout=config.dropout)
    freeze(classifier.model, config.freeze_depth)
    classifier.to(device).train()
    groups = param_groups(classifier.model, config.learning_rate, config.weight_decay, config.layer_lr_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda")
    epochs = [list(batches(data.train, config.batch_size, data.pad_token_id, shuffle_seed=config.seed * 1000 + e))
              for e in range(1, config.max_epochs + 1)]
    rate = 0.0
    for epoch in epochs:
        _sync(device)
        started, seen = time.perf_counter(), 0
        for batch in epoch:
            batch = to_device(batch, device)
            with autocast_for(device):
                logits = classifier(batch["input_ids"], batch["attention_mask"])
            F.cross_entropy(logits.float(), batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batch["labels"])
        _sync(device)
        rate = seen / (time.perf_counter() - started)
    return rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="per measurement; the last one is timed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_speed.json")
    args = parser.parse_args()
    model = args.model or minilm()
    threads = args.threads or torch.get_num_threads()
    data = prepare_data(data_file("train"), data_file("dev"), model, max_length=args.max_length,
                        train_limit=args.rows, validation_limit=128)
    blocks = num_encoder_blocks(load_classifier(model, data.label_names).model)
    depths = {"none": 0, "half": blocks // 2, "all": blocks}
    rows = {}
    for label, depth in depths.items():
        config = settings(model, depth, args.batch_size, args.epochs, threads)
        trainer, bare = [], []
        for _ in range(args.repeats):
            bare.append(bare_rate(config, data))
            trainer.append(trainer_rate(config, data))
        rows[label] = {"freeze_depth": depth, "trainer_examples_per_s": statistics.median(trainer),
                       "bare_examples_per_s": statistics.median(bare), "repeats": {"trainer": trainer, "bare": bare}}
        rows[label]["trainer_over_bare"] = rows[label]["trainer_examples_per_s"] / rows[label]["bare_examples_per_s"]
        r = rows[label]
        print(f"freeze {label} ({depth}): trainer {r['trainer_examples_per_s']:.1f} ex/s, bare "
              f"{r['bare_examples_per_s']:.1f} ex/s, ratio {r['trainer_over_bare']:.3f} "
              f"(repeats {[round(t / b, 3) for t, b in zip(trainer, bare, strict=True)]})", flush=True)
    frozen_speedup = rows["all"]["trainer_examples_per_s"] / rows["none"]["trainer_examples_per_s"]
    goal = 0.95 if torch.cuda.is_available() else 0.97
    missed = [k for k, r in rows.items() if r["trainer_over_bare"] < goal]
    print(f"all frozen / none frozen: {frozen_speedup:.2f}x (goal >= 2); trainer/bare goal >= {goal}: "
          + (f"missed at {missed}" if missed else "met at every depth"))
    write({"benchmark": "trainer_speed", "model": Path(model).name, "rows": args.rows, "max_length": args.max_length,
           "batch_size": args.batch_size, "threads": threads, "epochs": args.epochs, "repeats": args.repeats,
           "depths": rows, "all_frozen_over_none": frozen_speedup, "goal_trainer_over_bare": goal,
           "goals_missed": missed + ([] if frozen_speedup >= 2 else ["all_frozen_over_none"])}, args.out)


if __name__ == "__main__":
    main()
