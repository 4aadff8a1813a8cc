"""The commands that read a study's record: ``hpo list | status | stop | best``. They read the registry (``stop``
writes one request to it) and never start Ray or open MLflow."""

from __future__ import annotations

import time
from argparse import Namespace
from datetime import datetime

import yaml

from hpo.cli._common import fail, open_registry, require
from hpo.reporting.summary import format_params
from hpo.states import StudyStatus
from hpo.stores.registry import Registry, StudyRecord, utcnow


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (utcnow() - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _shown_status(registry: Registry, study: StudyRecord, stale_after_s: float) -> str:
    if study.status.driven and not registry.driver_alive(study, stale_after_s):
        return f"{study.status} (driver gone: hpo resume {study.name})"
    return str(study.status)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_list(args: Namespace) -> None:
    registry = open_registry(args)
    rows = [["STUDY", "STATUS", "TRIALS", "BEST", "AGE"]]
    for s in registry.list_studies():
        done = sum(t.state.finished for t in registry.trials(s.name))
        best = f"{s.metric}={s.best_metric:.4f}" if s.best_metric is not None else "-"
        rows.append([s.name, _shown_status(registry, s, args.stale_after_s), f"{done}/{s.num_samples}", best,
                     _age(s.created_at)])
    print(_table(rows) if len(rows) > 1 else "no studies yet")


def cmd_status(args: Namespace) -> None:
    registry = open_registry(args)
    s = require(registry, args.name)
    print(f"study {s.name}: {_shown_status(registry, s, args.stale_after_s)}"
          + (f" ({s.stop_reason})" if s.stop_reason else ""))
    print(f"  driver: pid {s.driver_pid} on {s.driver_host}, heartbeat {_age(s.heartbeat_at)} ago"
          if s.driver_pid else "  driver: none")
    if s.ray_job_id:
        print(f"  Ray job: {s.ray_job_id}")
    print(f"  MLflow experiment {s.mlflow_experiment_id}, study run {s.mlflow_parent_run_id}")
    rows = [["TRIAL", "STATE", "EPOCHS", f"BEST {s.metric}", "MLFLOW RUN", "PARAMS"]]
    for t in registry.trials(s.name):
        params = format_params(t.params)
        metric = f"{t.best_metric:.4f}" if t.best_metric is not None else "-"
        state = f"{t.state} ({t.fail_reason})" if t.fail_reason else str(t.state)
        rows.append([str(t.number), state, str(t.epochs), metric, t.mlflow_run_id or "-", params])
    print(_table(rows))
    if reruns := registry.confirmations(s.name):
        print("  confirmation reruns (the trial's config on another seed):")
        rows = [["TRIAL", "SEED", "STATE", "EPOCHS", f"BEST {s.metric}", "MLFLOW RUN"]]
        rows += [[str(c.trial_number), str(c.seed), str(c.state), str(c.epochs),
                  f"{c.best_metric:.4f}" if c.best_metric is not None else "-", c.mlflow_run_id or "-"] for c in reruns]
        print(_table(rows))


def cmd_stop(args: Namespace) -> None:
    registry = open_registry(args)
    s = require(registry, args.name)
    if not registry.driver_alive(s, args.stale_after_s) or not registry.request_stop(s.name):
        fail(f"study {s.name!r} has no running driver ({s.status}); nothing to stop", code=1)
    print(f"stopping {s.name}: running trials end at their latest checkpoint; `hpo resume {s.name}` continues")
    deadline = time.time() + args.wait
    while time.time() < deadline:
        if (status := registry.require(s.name).status) != StudyStatus.STOPPING:
            print(f"{s.name}: {status}")
            return
        time.sleep(1)


def cmd_best(args: Namespace) -> None:
    registry = open_registry(args)
    s = require(registry, args.name)
    if s.best_params is None:
        fail(f"study {s.name!r} has no finished trial yet", code=1)
    if args.format == "overrides":
        print(" ".join(f"search.{k}={v!r}" for k, v in sorted(s.best_params.items())))
    elif args.format == "yaml":
        print(f"# trial {s.best_trial_number} of {s.name}: {s.metric}={s.best_metric:.4f}\n"
              f"# reproduce: hpo sweep $(hpo best {s.name} --format overrides) study.name=...")
        print(yaml.safe_dump({"search": dict(sorted(s.best_params.items()))}, sort_keys=False), end="")
    else:
        print(f"study {s.name}: best {s.metric}={s.best_metric:.4f} (trial {s.best_trial_number})")
        for k, v in sorted(s.best_params.items()):
            print(f"  {k}: {v}")
        print(f"checkpoint: {s.best_checkpoint}\nmodel: {s.best_model_uri or '-'}")
