"""The ``hpo`` command.

    hpo sweep experiment=sst2_minilm            # compose conf/ with Hydra overrides, run a study
    hpo sweep --cfg job                         # print the composed config and exit
    hpo launch [--follow] cluster=ray ...       # submit the study's driver to a Ray cluster as a job
    hpo run study.yaml                          # run a composed config (what a launched job runs)
    hpo list                                    # every study in the registry
    hpo status NAME                             # one study, trial by trial
    hpo stop NAME                               # graceful stop, from any shell
    hpo resume NAME [--launch [--follow]]       # continue a crashed or stopped study (on the cluster)
    hpo best NAME [--format text|yaml|overrides]
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

from hpo.errors import ConfigError
from hpo.registry import Registry, RegistryError, StudyRecord, utcnow
from hpo.resolvers import CONFIG_DIR, register


def _fail(message: str, code: int = 2) -> None:
    print(f"hpo: {message}", file=sys.stderr)
    sys.exit(code)


def _run(spec, resume: bool) -> None:
    from hpo.launch import JOB_ID_ENV
    from hpo.summary import format_summary
    from hpo.tuner import run_study

    if os.environ.get(JOB_ID_ENV):
        # A launched job starts in Ray's unpacked working dir, which Ray may reclaim while the study runs.
        spec.storage_root.mkdir(parents=True, exist_ok=True)
        os.chdir(spec.storage_root)

    try:
        outcome = run_study(spec, resume=resume)
    except ConfigError as err:
        _fail(f"config error: {err}")
    except RegistryError as err:
        _fail(str(err))
    print(format_summary(outcome, spec.metric), flush=True)
    if outcome.best_value is None:
        sys.exit(1)


def _sweep_task(cfg) -> None:
    from hpo.config import build_spec

    try:
        spec = build_spec(cfg)
    except ConfigError as err:
        _fail(f"config error: {err}")
    _run(spec, resume=False)


def sweep(args: list[str]) -> None:
    import hydra

    register()
    task = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_sweep_task)
    sys.argv = ["hpo sweep", *args]
    task()


def launch(args: list[str]) -> None:
    """``hpo launch [--follow] [--no-local-check] OVERRIDES``: the study's driver as a Ray Job."""
    from hpo.config import compose
    from hpo.launch import launch_study

    flags = {a for a in args if a.startswith("--")}
    unknown = flags - {"--follow", "--no-local-check"}
    if unknown:
        _fail(f"unknown option(s) {sorted(unknown)}; hpo launch [--follow] [--no-local-check] OVERRIDES")
    try:
        cfg = compose([a for a in args if not a.startswith("--")])
        dashboard_url, job_id = launch_study(cfg, check_locally="--no-local-check" not in flags)
    except ConfigError as err:
        _fail(f"config error: {err}")
    name = cfg.study.name
    print(f"launched study {name} as Ray job {job_id} on {dashboard_url}\n"
          f"  logs:   ray job logs --address {dashboard_url} --follow {job_id}\n"
          f"  status: hpo --registry '<registry.url>' status {name}", flush=True)
    if "--follow" in flags:
        _follow(dashboard_url, job_id)


def _follow(dashboard_url: str, job_id: str) -> None:
    """Streams a launched job's log until it ends; exits 0 only if it succeeded. Ctrl-C leaves the job running."""
    from hpo.launch import follow

    again = f"ray job logs --address {dashboard_url} --follow {job_id}"
    try:
        status = follow(dashboard_url, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} goes on: {again}")
        sys.exit(130)
    except RuntimeError as err:  # the log stream broke (network, head restart); the job is not ours to end
        _fail(f"lost the log stream of job {job_id} ({err}); it may still be running: {again}")
    print(f"job {job_id}: {status}")
    sys.exit(0 if status == "SUCCEEDED" else 1)


def cmd_run(args) -> None:
    from omegaconf import OmegaConf

    from hpo.config import build_spec

    register()
    try:
        spec = build_spec(OmegaConf.load(args.config))
    except ConfigError as err:
        _fail(f"config error: {err}")
    _run(spec, resume=False)


# --- registry commands -------------------------------------------------------------------------


def _registry(args) -> Registry:
    root = os.path.realpath(args.storage_root)  # as the sweep resolved storage.root
    url = args.registry or f"sqlite:///{root}/registry.db"
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        _fail(f"no study registry at {url}: run `hpo sweep` first, or pass --storage-root / --registry")
    return Registry.open(url)


def _require(registry: Registry, name: str) -> StudyRecord:
    try:
        return registry.require(name)
    except RegistryError as err:
        _fail(str(err))


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (utcnow() - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _shown_status(registry: Registry, study: StudyRecord, stale_after_s: float) -> str:
    if study.status in ("running", "stopping") and not registry.driver_alive(study, stale_after_s):
        return f"{study.status} (driver gone: hpo resume {study.name})"
    return study.status


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_list(args) -> None:
    registry = _registry(args)
    rows = [["STUDY", "STATUS", "TRIALS", "BEST", "AGE"]]
    for s in registry.list_studies():
        done = sum(t.state in ("completed", "pruned", "failed") for t in registry.trials(s.name))
        best = f"{s.metric}={s.best_metric:.4f}" if s.best_metric is not None else "-"
        rows.append([s.name, _shown_status(registry, s, args.stale_after_s), f"{done}/{s.num_samples}", best,
                     _age(s.created_at)])
    print(_table(rows) if len(rows) > 1 else "no studies yet")


def cmd_status(args) -> None:
    registry = _registry(args)
    s = _require(registry, args.name)
    print(f"study {s.name}: {_shown_status(registry, s, args.stale_after_s)}"
          + (f" ({s.stop_reason})" if s.stop_reason else ""))
    print(f"  driver: pid {s.driver_pid} on {s.driver_host}, heartbeat {_age(s.heartbeat_at)} ago"
          if s.driver_pid else "  driver: none")
    if s.ray_job_id:
        print(f"  Ray job: {s.ray_job_id}")
    print(f"  MLflow experiment {s.mlflow_experiment_id}, study run {s.mlflow_parent_run_id}")
    rows = [["TRIAL", "STATE", "EPOCHS", f"BEST {s.metric}", "MLFLOW RUN", "PARAMS"]]
    for t in registry.trials(s.name):
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        metric = f"{t.best_metric:.4f}" if t.best_metric is not None else "-"
        state = f"{t.state} ({t.fail_reason})" if t.fail_reason else t.state
        rows.append([str(t.number), state, str(t.epochs), metric, t.mlflow_run_id or "-", params])
    print(_table(rows))


def cmd_stop(args) -> None:
    import time

    registry = _registry(args)
    s = _require(registry, args.name)
    if s.status not in ("running", "stopping") or not registry.driver_alive(s, args.stale_after_s):
        _fail(f"study {s.name!r} has no running driver ({s.status}); nothing to stop", code=1)
    registry.update(s.name, status="stopping")
    print(f"stopping {s.name}: running trials end at their latest checkpoint; `hpo resume {s.name}` continues")
    deadline = time.time() + args.wait
    while time.time() < deadline:
        if registry.require(s.name).status != "stopping":
            print(f"{s.name}: {registry.require(s.name).status}")
            return
        time.sleep(1)


def cmd_resume(args) -> None:
    from omegaconf import OmegaConf

    from hpo.config import build_spec

    registry = _registry(args)
    s = _require(registry, args.name)
    if s.status == "completed":
        print(f"study {s.name} already completed ({s.stop_reason}); nothing to resume")
        return
    register()
    if args.launch:
        from hpo.launch import launch_resume

        stored = OmegaConf.create(s.config_yaml)  # as the cluster resolved it: its registry URL, its paths
        dashboard_url = args.dashboard_url or stored.cluster.get("dashboard_url")
        if not dashboard_url:
            _fail(f"study {s.name} has no cluster.dashboard_url; pass --dashboard-url http://HEAD:8265")
        job_id = launch_resume(s.name, stored.registry.get("url"), str(stored.storage.root), dashboard_url)
        print(f"resuming study {s.name} as Ray job {job_id} on {dashboard_url}", flush=True)
        if args.follow:
            _follow(dashboard_url, job_id)
        return
    try:
        spec = build_spec(OmegaConf.create(s.config_yaml))
    except ConfigError as err:
        _fail(f"config error in the stored config of {s.name}: {err}")
    if spec.registry_url != registry.url:
        _fail(f"study {s.name} was recorded with registry {spec.registry_url}, not {registry.url}")
    _run(spec, resume=True)


def cmd_best(args) -> None:
    import yaml

    registry = _registry(args)
    s = _require(registry, args.name)
    if s.best_params is None:
        _fail(f"study {s.name!r} has no finished trial yet", code=1)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--storage-root", default=os.environ.get("HPO_STORAGE_ROOT", "runs"),
                        help="the sweep's storage.root (default: ./runs or $HPO_STORAGE_ROOT)")
    parser.add_argument("--registry", help="the registry URL, when not sqlite under --storage-root")
    parser.add_argument("--stale-after-s", type=float, default=30.0, help="a silent driver counts as gone after this")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sweep", help="run a study: hpo sweep [HYDRA OVERRIDES]")
    commands.add_parser("list", help="list studies").set_defaults(func=cmd_list)
    commands.add_parser("launch", help="submit a study to a Ray cluster: hpo launch [--follow] [OVERRIDES]")
    run = commands.add_parser("run", help="run a study from a composed config file (what `hpo launch` submits)")
    run.add_argument("config")
    run.set_defaults(func=cmd_run)
    status = commands.add_parser("status", help="one study, trial by trial")
    status.add_argument("name")
    status.set_defaults(func=cmd_status)
    resume = commands.add_parser("resume", help="continue a crashed or stopped study")
    resume.add_argument("name")
    resume.add_argument("--launch", action="store_true", help="resume it on the cluster as a Ray job")
    resume.add_argument("--dashboard-url", help="the cluster's job server (default: the study's cluster.dashboard_url)")
    resume.add_argument("--follow", action="store_true", help="with --launch: stream the job's log until it ends")
    resume.set_defaults(func=cmd_resume)
    stop = commands.add_parser("stop", help="stop a running study gracefully")
    stop.add_argument("name")
    stop.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the driver to stop")
    stop.set_defaults(func=cmd_stop)
    best = commands.add_parser("best", help="the best trial of a study")
    best.add_argument("name")
    best.add_argument("--format", choices=("text", "yaml", "overrides"), default="text")
    best.set_defaults(func=cmd_best)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("sweep", "launch"):
        (sweep if argv[0] == "sweep" else launch)(argv[1:])
        return
    args = _parser().parse_args(argv)
    args.func(args)
