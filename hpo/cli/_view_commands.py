"""The commands that show a study: ``hpo report`` (its report drawn again from the stores) and ``hpo ui`` (MLflow's
UI on 127.0.0.1, opened on the study's runs)."""

from __future__ import annotations

import os
import signal
import sys
import time
import webbrowser
from argparse import Namespace
from pathlib import Path

from hpo.cli._common import fail, open_registry, require
from hpo.config.compose import stored_storage
from hpo.reporting.report import build_report, write_report
from hpo.reporting.ui import is_server, runs_url, serve, stop
from hpo.secrets import redact_url, redacted
from hpo.stores.registry import Registry, StudyRecord
from hpo.stores.tracking import client, log_report, set_trials_view


def cmd_report(args: Namespace) -> None:
    """Draws the study's report again from its stores (e.g. of a study that is still running)."""
    registry = open_registry(args)
    redraw_report(registry, require(registry, args.name), Path(args.to).resolve() if args.to else None)


def redraw_report(registry: Registry, s: StudyRecord, to: Path | None = None) -> None:
    """The study's report drawn again into ``to``, or into its own folder and its MLflow run."""
    storage = stored_storage(s, [registry.url])
    out = to or storage.study_dir(s.name) / "report"
    started = time.monotonic()
    files = write_report(build_report(registry, s.name), out)
    where = str(out)
    if to is None and s.mlflow_parent_run_id:  # the study's own report: MLflow's copy follows it
        log_report(client(storage.tracking_uri), s.mlflow_parent_run_id, out)
        where += f" and MLflow run {s.mlflow_parent_run_id} (report/)"
    print(f"report of {s.name}: {len(files)} files in {where} ({time.monotonic() - started:.1f} s)\n"
          f"  {out / 'report.md'}\n  {out / 'report.html'}")


def cmd_ui(args: Namespace) -> None:
    """Serves the MLflow UI over the study's store on 127.0.0.1 and prints the study's runs page."""
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
            if experiment_id is not None and not is_server(tracking_uri):  # recorded before hpo stored the view
                # (on a tracking server the driver stores it when the study starts or resumes)
                params = sorted({k for t in registry.trials(name) for k in (t.params or {})})
                set_trials_view(client(tracking_uri), experiment_id, [(s.metric, s.mode)], params,
                                only_if_missing=True)
    if is_server(tracking_uri):
        url = runs_url(redacted(tracking_uri), experiment_id)  # a browser asks for the password itself
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
