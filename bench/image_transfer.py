"""What pretraining and full fine-tuning are worth for images, measured in one run on the same data and epochs.

EfficientNet-Lite0 on the Fashion-MNIST subset shipped in data/fashion_mnist/ (2,000 train / 1,000 validation images
at ``--size`` pixels), one fixed config, four arms trained for the same epochs on the same seeds:

  * ``pretrained_full``: ImageNet weights, every layer trains (freeze_depth 0);
  * ``random_full``: the same architecture from random weights (``pretrained=False``);
  * ``pretrained_head``: ImageNet weights, the stem and all 16 blocks frozen (only the 1x1 head conv and the new
    classifier train: "head-only");
  * ``pretrained_half``: the stem and the first 8 blocks frozen.

Printed: validation accuracy per arm (mean over ``--seeds``), the differences pretrained - random and full - head-only,
and the per-epoch training speed of all-frozen over none-frozen (goal >= 2x: no backward through frozen blocks).

    python -m bench.image_transfer [--epochs 3] [--seeds 2] [--size 64] [--out bench/results/image_transfer.json]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.common import REPO, RESULTS, write
from trainers import TrainConfig
from trainers.images.data import prepare_images
from trainers.images.loop import fine_tune

ARMS = {"pretrained_full": {"freeze_depth": 0}, "random_full": {"freeze_depth": 0, "pretrained": False},
        "pretrained_half": {"freeze_depth": 8}, "pretrained_head": {"freeze_depth": 16}}


class _Curve:
    def __init__(self) -> None:
        self.history: list[dict] = []

    def report(self, metrics, checkpoint_dir) -> None:
        self.history.append(dict(metrics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "image_transfer.json")
    args = parser.parse_args()
    fashion = REPO / "data" / "fashion_mnist"
    data = prepare_images(fashion / "train", fashion / "validation", args.size)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for seed in range(args.seeds):
        for arm, changes in ARMS.items():  # arms alternate within a seed: load drift hits them alike
            cfg = TrainConfig(model_name_or_path="efficientnet_lite0", max_epochs=args.epochs, learning_rate=1e-3,
                              batch_size=64, weight_decay=0.01, dropout=0.2, warmup_ratio=0.1, aug_flip=True,
                              seed=seed, num_threads=args.threads, **changes)
            curve = _Curve()
            fine_tune(cfg, data, curve)
            results[arm].append({"seed": seed, "val_accuracy": curve.history[-1]["val_accuracy"],
                                 "best_val_accuracy": max(m["val_accuracy"] for m in curve.history),
                                 "train_examples_per_s": statistics.fmean(m["train_examples_per_s"]
                                                                          for m in curve.history),
                                 "trainable_params": curve.history[-1]["trainable_params"]})
            print(f"seed {seed} {arm}: val_accuracy {results[arm][-1]['val_accuracy']:.4f}, "
                  f"{results[arm][-1]['train_examples_per_s']:.0f} train images/s", flush=True)
    mean = {arm: statistics.fmean(r["val_accuracy"] for r in rows) for arm, rows in results.items()}
    speed = {arm: statistics.fmean(r["train_examples_per_s"] for r in rows) for arm, rows in results.items()}
    summary = {
        "pretrained_minus_random": mean["pretrained_full"] - mean["random_full"],
        "full_minus_head_only": mean["pretrained_full"] - mean["pretrained_head"],
        "head_only_speedup_per_epoch": speed["pretrained_head"] / speed["pretrained_full"],
        "half_frozen_speedup_per_epoch": speed["pretrained_half"] / speed["pretrained_full"],
    }
    print("\n| arm | val_accuracy (mean) | train images/s | trainable params |\n|---|---|---|---|")
    for arm in ARMS:
        print(f"| {arm} | {mean[arm]:.4f} | {speed[arm]:.0f} | {results[arm][0]['trainable_params']:.0f} |")
    print(f"\npretrained - random init (full, {args.epochs} epochs): {summary['pretrained_minus_random']:+.4f}")
    print(f"full - head-only: {summary['full_minus_head_only']:+.4f}")
    print(f"all-frozen / none-frozen training speed per epoch: {summary['head_only_speedup_per_epoch']:.2f}x "
          f"(goal >= 2); half-frozen: {summary['half_frozen_speedup_per_epoch']:.2f}x")
    write({"settings": vars(args) | {"out": str(args.out)}, "results": results, "mean": mean, "speed": speed,
           "summary": summary}, args.out)


if __name__ == "__main__":
    main()
