"""What a trial's machine did while it trained: CPU, memory and GPU use, averaged over each epoch.

MLflow's own monitors (the ones ``mlflow.start_run(log_system_metrics=True)`` runs: CPU and memory through
``psutil``, NVIDIA GPUs through ``nvidia-ml-py``) sample in the trial's Ray worker, where the trial runs; the averages
travel with the epoch's result under ``system/`` (the keys MLflow's UI charts on a run's "System metrics" tab) and
the driver's ledger logs them, so MLflow keeps its one writer and a trial on another node is measured where it ran.
Added: the trial process's own CPU (100 = one core busy) and resident memory, which tell a starved trial from a busy
node. Example::

    >>> with SystemSampler(interval_s=0.05) as sampler:
    ...     _ = sum(range(10**6))
    ...     sample = sampler.take()
    >>> sorted(k.removeprefix("system/") for k in sample if not k.startswith("system/gpu"))[:3]
    ['cpu_utilization_percentage', 'system_memory_usage_megabytes', 'system_memory_usage_percentage']
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil
from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor
from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

from hpo.result_keys import SYSTEM_PREFIX

PREFIX = SYSTEM_PREFIX


class _TrialProcessMonitor(BaseMetricsMonitor):
    """The trial process itself (MLflow's monitors measure the whole machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first call only starts the measurement

    def collect_metrics(self) -> None:
        self._metrics["trial_cpu_percentage"].append(self.process.cpu_percent())
        self._metrics["trial_memory_megabytes"].append(self.process.memory_info().rss / 1e6)

    def aggregate_metrics(self) -> dict[str, float]:
        return {k: round(sum(v) / len(v), 1) for k, v in self._metrics.items()}


def _monitors() -> list[BaseMetricsMonitor]:
    monitors: list[BaseMetricsMonitor] = [CPUMonitor(), _TrialProcessMonitor()]
    try:
        monitors.append(GPUMonitor())
    except (ImportError, RuntimeError):  # no NVIDIA GPU (or its library) on this node: CPU and memory only
        pass
    return monitors


class SystemSampler:
    """Samples every ``interval_s`` on a daemon thread; :meth:`take` returns the averages since the last take."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.monitors = _monitors()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-system-metrics", daemon=True)

    def __enter__(self) -> SystemSampler:
        self._collect()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._collect()

    def _collect(self) -> None:
        with self._lock:
            for monitor in self.monitors:
                monitor.collect_metrics()

    def take(self) -> dict[str, float]:
        """``system/<name>``: each metric's mean over the samples since the previous call (then cleared)."""
        self._collect()  # at least one sample, however short the epoch
        with self._lock:
            sample: dict[str, float] = {}
            for monitor in self.monitors:
                sample |= {f"{PREFIX}{k}": float(v) for k, v in monitor.aggregate_metrics().items()}
                monitor.clear_metrics()
        return sample
