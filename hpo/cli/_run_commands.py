"""The commands that run a study's driver: ``hpo sweep`` (compose ``conf/`` with Hydra overrides), ``hpo run`` (a
composed config file, what a launched job runs), ``hpo resume`` and ``hpo launch`` (the driver as a Ray job)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from hpo.cli._common import fail, open_registry, require
from hpo.config.compose import build_spec, compose, stored_config, with_kind_changes
from hpo.config.overrides import check_overrides
from hpo.config.resolvers import CONFIG_DIR, register
from hpo.config.sections import as_study_config
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from hpo.reporting.summary import StudyOutcome, format_summary
from hpo.secrets import MASK, redact_url
from hpo.states import StudyStatus
from hpo.stores.registry import RegistryError
from hpo.stores.tracking import TrackingGone
from hpo.study.launch import JOB_ID_ENV, follow, launch_resume, launch_study
from hpo.study.resume import finish_closing
from hpo.study.run import run_study
from hpo.study.signals import StopNow, describe


def run_and_exit(spec: StudySpec, resume: bool, display: str = "auto",
                 then: Callable[[StudyOutcome], None] | None = None) -> None:
    """Runs the study, prints its summary, and exits with its code; ``then`` runs first when it found a best."""
    outcome = run_or_fail(spec, resume, display)
    if then is not None and outcome.exit_code is None and outcome.best_value is not None:
        then(outcome)
    if outcome.exit_code is not None:
        sys.exit(outcome.exit_code)
    if outcome.best_value is None:
        sys.exit(1)


def run_or_fail(spec: StudySpec, resume: bool, display: str = "auto") -> StudyOutcome:
    """Runs the study and prints its summary; a refusal or a lost store ends the command with one line."""
    if os.environ.get(JOB_ID_ENV):
        # A launched job starts in Ray's unpacked working dir, which Ray may reclaim while the study runs.
        spec.storage.root.mkdir(parents=True, exist_ok=True)
        os.chdir(spec.storage.root)
    try:
        outcome = run_study(spec, resume=resume, display=display)
    except ConfigError as err:
        fail(f"config error: {err}")
    except RegistryError as err:
        fail(str(err))
    except TrackingGone as gone:
        fail(f"{gone}; study {spec.name} is recorded as failed, resumable: once the server answers, "
             f"`hpo resume {spec.name}`", 1)
    except StopNow as now:
        fail(f"study {spec.name} stopped at once ({describe(now.signum)} twice); resume it with "
             f"`hpo resume {spec.name}`", 128 + now.signum)
    print(format_summary(outcome), flush=True)
    return outcome


def spec_or_fail(cfg: DictConfig, where: str = "") -> StudySpec:
    try:
        return build_spec(cfg)
    except ConfigError as err:
        fail(f"config error{where}: {err}")


def _search_path(overrides: list[str]) -> list[str]:
    """Hydra's ``--config-dir DIR`` (``-cd DIR``: the user's own config folder beside hpo's) as the override that
    makes the same folder visible to the checks run before Hydra's."""
    for i, flag in enumerate(overrides):
        name, _, value = flag.partition("=")
        if name in ("--config-dir", "-cd"):
            folder = value or (overrides[i + 1] if i + 1 < len(overrides) else "")
            if not Path(folder).is_dir():
                fail(f"config error: --config-dir {folder!r} is not a folder")
            return [f"hydra.searchpath=[file://{Path(folder).resolve()}]"]
    return []


def cmd_sweep(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    for option, key in ((args.storage_root_given, "storage.root"), (args.registry, "registry.url")):
        if option and not any(o.startswith(f"{key}=") for o in overrides):
            overrides.insert(0, f"{key}={option}")
    register()

    try:
        overrides = with_kind_changes(overrides)
        check_overrides([*overrides, *_search_path(overrides)])
    except ConfigError as err:
        fail(f"config error: {err}")
    task = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(
        lambda cfg: run_and_exit(spec_or_fail(cfg), resume=False, display=display_of(args)))
    sys.argv = ["hpo sweep", *overrides]
    task()


def cmd_launch(args: argparse.Namespace) -> None:
    try:
        cfg = compose(args.overrides)
        dashboard_url, job_id = launch_study(cfg, check_locally=not args.no_local_check)
    except ConfigError as err:
        fail(f"config error: {err}")
    name = cfg.study.name
    print(f"launched study {name} as Ray job {job_id} on {dashboard_url}\n"
          f"  logs:   ray job logs --address {dashboard_url} --follow {job_id}\n"
          f"  status: hpo --registry '<registry.url>' status {name}", flush=True)
    if args.follow:
        _follow(dashboard_url, job_id)


def _follow(dashboard_url: str, job_id: str) -> None:
    """Streams a launched job's log until it ends; exits 0 only if it succeeded. Ctrl-C leaves the job running."""

    again = f"ray job logs --address {dashboard_url} --follow {job_id}"
    try:
        status = follow(dashboard_url, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} goes on: {again}")
        sys.exit(130)
    except RuntimeError as err:  # the log stream broke (network, head restart); the job is not ours to end
        fail(f"lost the log stream of job {job_id} ({err}); it may still be running: {again}")
    print(f"job {job_id}: {status}")
    sys.exit(0 if status == "SUCCEEDED" else 1)


def display_of(args: argparse.Namespace) -> str:
    """Live progress in a terminal, plain lines when piped; ``--quiet``: the summary only."""
    return "quiet" if args.quiet else "auto"


def cmd_run(args: argparse.Namespace) -> None:
    register()
    try:
        cfg = as_study_config(OmegaConf.load(args.config))
    except ConfigError as err:
        fail(f"config error in {args.config}: {err}")
    run_and_exit(spec_or_fail(cfg), resume=False, display=display_of(args))


def cmd_resume(args: argparse.Namespace) -> None:
    registry = open_registry(args)
    s = require(registry, args.name)
    if s.status == StudyStatus.COMPLETED:
        closed = finish_closing(registry, s)  # its driver died while closing it: the MLflow run and report
        print(f"study {s.name} already completed ({s.stop_reason}); nothing to resume"
              + ("; its MLflow run and report, left open when its driver stopped, are now closed" if closed else ""))
        return

    register()
    # As the driver resolved it, with the credentials it was stored without (hpo.secrets) filled from the registry
    # URL given here and any KEY=URL passed again.
    given = [registry.url, *(o.split("=", 1)[1] for o in args.overrides if "=" in o)]
    stored = OmegaConf.merge(stored_config(s.config_yaml, given), OmegaConf.from_dotlist(list(args.overrides)))
    for key in ("registry.url", "storage.optuna_url", "tracking.uri", "storage.checkpoints"):
        if MASK in str(OmegaConf.select(stored, key) or ""):
            fail(f"config error: {key}: study {s.name} was stored without this URL's credentials; pass it again: "
                 f"hpo resume {s.name} {key}=<url>")
    if args.launch:
        dashboard_url = args.dashboard_url or stored.cluster.get("dashboard_url")
        if not dashboard_url:
            fail(f"study {s.name} has no cluster.dashboard_url; pass --dashboard-url http://HEAD:8265")
        job_id = launch_resume(s.name, stored.registry.get("url"), str(stored.storage.root), dashboard_url)
        print(f"resuming study {s.name} as Ray job {job_id} on {dashboard_url}", flush=True)
        if args.follow:
            _follow(dashboard_url, job_id)
        return
    spec = spec_or_fail(as_study_config(stored), where=f" in the stored config of {s.name}")
    if spec.storage.registry_url != registry.url:
        fail(f"study {s.name} was recorded with registry {redact_url(spec.storage.registry_url)}, "
             f"not {redact_url(registry.url)}")
    run_and_exit(spec, resume=True, display=display_of(args))
