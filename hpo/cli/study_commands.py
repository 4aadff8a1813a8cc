"""The commands that read a recorded study: ``hpo list | status | stop | best | report | ui``. They read the
registry (``stop`` writes one request to it) and never start Ray."""

from __future__ import annotations

import os
import sys
import time
from argparse import Namespace
from datetime import datetime

from hpo.reporting.summary import format_params
from hpo.secrets import redact_url
from hpo.states import StudyStatus
from hpo.stores.registry import Registry, RegistryError, StudyRecord, utcnow


def fail(message: str, code: int = 2) -> None:
    print(f"hpo: {message}", file=sys.stderr)
    sys.exit(code)


def open_registry(args: Namespace) -> Registry:
    root = os.path.realpath(args.storage_root)  # as the sweep resolved storage.root
    url = args.registry or f"sqlite:///{root}/registry.db"
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        fail(f"no study registry at {url}: run `hpo sweep` first, or pass --storage-root / --registry")
    return Registry.open(url)


def require(registry: Registry, name: str) -> StudyRecord:
    try:
        return registry.require(name)
    except RegistryError as err:
        fail(str(err))


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
    import yaml

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


def cmd_report(args: Namespace) -> None:
    """Draws the study's report again from its stores (e.g. of a study that is still running)."""
    from pathlib import Path

    from mlflow import MlflowClient

    from hpo.config.compose import stored_storage
    from hpo.reporting.report import build_report, write_report
    from hpo.stores.tracking import log_report

    registry = open_registry(args)
    s = require(registry, args.name)
    storage = stored_storage(s, [registry.url])
    out = Path(args.to).resolve() if args.to else storage.study_dir(s.name) / "report"
    started = time.monotonic()
    files = write_report(build_report(registry, s.name), out)
    where = str(out)
    if not args.to and s.mlflow_parent_run_id:  # the study's own report: MLflow's copy follows it
        log_report(MlflowClient(storage.tracking_uri), s.mlflow_parent_run_id, out)
        where += f" and MLflow run {s.mlflow_parent_run_id} (report/)"
    print(f"report of {s.name}: {len(files)} files in {where} ({time.monotonic() - started:.1f} s)\n"
          f"  {out / 'report.md'}\n  {out / 'report.html'}")


def cmd_ui(args: Namespace) -> None:
    """Serves the MLflow UI over the study's store on 127.0.0.1 and prints the study's runs page."""
    import signal
    import webbrowser

    from hpo.config.compose import stored_storage
    from hpo.reporting.ui import is_server, runs_url, serve, stop

    name, experiment_id = args.name, None
    tracking_uri = f"sqlite:///{os.path.realpath(args.storage_root)}/mlflow.db"
    if name or os.path.exists(tracking_uri.removeprefix("sqlite:///")):
        registry = open_registry(args)
        studies = registry.list_studies()
        if name is None and studies:  # the latest study
            name = max(studies, key=lambda s: s.created_at).name
        if name:
            s = require(registry, name)
            tracking_uri, experiment_id = stored_storage(s, [registry.url]).tracking_uri, s.mlflow_experiment_id
    if is_server(tracking_uri):
        url = runs_url(redact_url(tracking_uri), experiment_id)
        print(f"study {name} is tracked on an MLflow server: {url}")
        if args.open:
            webbrowser.open(url)
        return
    try:
        server = serve(tracking_uri, args.port, host=args.host)
    except RuntimeError as err:
        fail(f"{err}; another server on port {args.port}? try --port")
    url = runs_url(f"http://{args.host}:{args.port}", experiment_id)
    what = f"study {name}" if name else "studies"
    print(f"MLflow UI over {redact_url(tracking_uri)} (Ctrl-C stops it)\n  {what}: {url}", flush=True)
    if args.open:
        webbrowser.open(url)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` ends the server with us, as Ctrl-C does
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)


def finish_closing(registry: Registry, record: StudyRecord) -> bool:
    """Completes what a driver killed while closing its study left undone: the registry had recorded the end (it is
    written first), the study's MLflow run was still open and its report unwritten. True if there was any."""
    from mlflow import MlflowClient

    from hpo.config.compose import stored_storage
    from hpo.reporting.report import build_report, write_report
    from hpo.stores.tracking import finish_study_run, log_report

    storage = stored_storage(record, [registry.url])
    client = MlflowClient(storage.tracking_uri)
    run_id = record.mlflow_parent_run_id
    if run_id is None or client.get_run(run_id).info.status != "RUNNING":
        return False
    out = storage.study_dir(record.name) / "report"
    write_report(build_report(registry, record.name), out)
    log_report(client, run_id, out)
    best = None
    if record.best_trial_number is not None:
        trial = registry.trial(record.name, record.best_trial_number)
        best = {"value": record.best_metric, "params": record.best_params or {}, "number": record.best_trial_number,
                "run_id": trial.mlflow_run_id if trial else None}
    finish_study_run(client, run_id, record.metric, best, record.status.mlflow_status, record.stop_reason)
    return True
