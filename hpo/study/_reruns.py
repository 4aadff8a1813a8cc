"""The confirmation stage's reruns (``confirm.top_k``) as Ray tasks: the search's top configs trained again on further
seeds, each rerun's epochs handed to the study ledger, which records them. The statistics that pick the winner
from them are :mod:`hpo.ranking`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray

from hpo.config.model_choice import trial_data, trial_settings
from trainers import ConsoleReporter
from trainers.tasks import load_task


def train_rerun(task: str, trainer, models, params: dict[str, Any], seed: int, data,
                num_threads: int) -> list[dict[str, float]]:
    """One rerun of ``task``, in a Ray worker: ``params`` on ``seed``; returns each epoch's metrics."""
    curve = ConsoleReporter()  # keeps each epoch's metrics (a rerun keeps no model)
    settings = trial_settings(trainer, params, models, seed=seed, num_threads=num_threads, resume_from=None)
    load_task(task).fine_tune(settings, trial_data(data, params), curve)
    return curve.history


def run_reruns(todo: Sequence[tuple[int, int, dict[str, Any]]], *, task: str, trainer, models, data, cpu: float,
               gpu: float,
               max_retries: int, max_concurrent: int, stopped: Callable[[], bool],
               started: Callable[[int, int], None], ended: Callable[[int, int, list | None, str | None], None]) -> None:
    """Runs ``todo`` (trial number, seed, params) as Ray tasks, ``max_concurrent`` at a time; ``started`` and
    ``ended(number, seed, epochs or None, error)`` are the ledger's. When ``stopped()`` turns true the running
    reruns are cancelled and reported with no epochs and no error (to be run again by ``hpo resume``)."""
    remote = ray.remote(train_rerun).options(num_cpus=cpu, num_gpus=gpu, max_retries=max_retries)
    shared = ray.put(data)
    pending = list(todo)
    running: dict[ray.ObjectRef, tuple[int, int]] = {}
    while pending or running:
        while pending and len(running) < max_concurrent and not stopped():
            number, seed, params = pending.pop(0)
            started(number, seed)
            running[remote.remote(task, trainer, models, params, seed, shared, max(1, int(cpu)))] = (number, seed)
        if stopped():
            for ref, (number, seed) in running.items():
                ray.cancel(ref, force=True)
                ended(number, seed, None, None)
            return
        done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for ref in done:
            number, seed = running.pop(ref)
            try:
                ended(number, seed, ray.get(ref), None)
            except ray.exceptions.RayError as err:
                ended(number, seed, None, str(err).splitlines()[0][:300])
