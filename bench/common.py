"""What every benchmark under bench/ shares: the machine's name, the default data, writing results as JSON.

Each benchmark compares against a baseline measured in the same run and prints ratios; its JSON names the
machine it ran on (``machine()``), so figures from different machines are never compared by accident.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

import hpo

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def machine() -> str:
    """``"CPU x86_64, 2 cores"`` or the GPU's name: how results name where they were measured."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def data_file(split: str) -> str:
    """SST-2 as the default study reads it (the repository's copy; ``HPO_DATA_DIR`` overrides): ``train`` or
    ``dev``."""
    data = hpo.compose(["data=sst2"]).data
    return str(data.train_path if split == "train" else data.validation_path)


def minilm() -> str:
    """The default study's pretrained model (all-MiniLM-L6-v2, from its PyPI package)."""
    return str(hpo.compose(["model=minilm_l6"]).model.name_or_path)


def write(result: dict, out: Path | None) -> None:
    """Prints ``result`` and writes it (with the machine named) to ``out`` when given."""
    result = {"machine": machine(), **result}
    text = json.dumps(result, indent=2) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


def folder_bytes(folder: str | Path) -> int:
    """Bytes of the files under ``folder`` (hard links counted once per name: what a copy would write)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


class MethodTimer:
    """Counts calls to, and seconds in, a class's public methods, per label: a benchmark's probe of the driver's
    writes to a store (MLflow, the registry, Optuna). A call made from inside another of the same label is
    counted once, in the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.latencies: dict[str, list[float]] = defaultdict(list)

    def wrap(self, cls: type, label: str, only: Iterable[str] | None = None) -> None:
        depth = [0]
        names = list(only) if only else [n for n, m in vars(cls).items() if not n.startswith("_") and callable(m)
                                         and not isinstance(m, (staticmethod, classmethod))]
        for name in names:
            member = getattr(cls, name)

            def timed(*args, _member=member, **kwargs):
                started = time.perf_counter()
                depth[0] += 1
                try:
                    return _member(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if not depth[0]:
                        took = time.perf_counter() - started
                        self.seconds[label] += took
                        self.calls[label] += 1
                        self.latencies[label].append(took)
            setattr(cls, name, timed)
