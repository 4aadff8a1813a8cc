"""The ``hpo`` command: one parser, one subcommand per job.

    hpo sweep experiment=sst2_minilm            # compose conf/ with Hydra overrides, run a study
    hpo sweep --cfg job                         # print the composed config and exit
    hpo launch [--follow] cluster=ray ...       # submit the study's driver to a Ray cluster as a job
    hpo run study.yaml                          # run a composed config (what a launched job runs)
    hpo list                                    # every study in the registry
    hpo status NAME                             # one study, trial by trial
    hpo stop NAME                               # graceful stop, from any shell
    hpo resume NAME [--launch [--follow]]       # continue a crashed or stopped study (on the cluster)
    hpo best NAME [--format text|yaml|overrides]
    hpo report NAME [--to DIR]                  # plots + a one-page summary (also written when a study ends)
    hpo ui [NAME] [--open] [--port 5000]        # the MLflow UI on 127.0.0.1, opened on the study's runs
    hpo export NAME --to DIR [--onnx]           # the best model as a Hugging Face folder (+ model card, ONNX)
    hpo predict NAME [TEXT ...] [--file F]      # labels and probabilities (texts from stdin when none given)
    hpo refit NAME [--with-validation] [K=V...] # the best config trained again for its best epochs, registered
    hpo ensemble NAME [--top K]                 # the top K trials' probabilities averaged, evaluated, registered

Global options (before the subcommand) say where the registry is; their defaults come from conf/config.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys

from omegaconf import OmegaConf

from hpo.cli.model_commands import cmd_ensemble, cmd_export, cmd_predict, cmd_refit
from hpo.cli.study_commands import (
    cmd_best,
    cmd_list,
    cmd_report,
    cmd_status,
    cmd_stop,
    cmd_ui,
    fail,
    open_registry,
    require,
)
from hpo.config.resolvers import CONFIG_DIR, register
from hpo.errors import ConfigError
from hpo.secrets import MASK, redact_url
from hpo.states import StudyStatus
from hpo.stores.registry import RegistryError

PASS_THROUGH = ("sweep",)  # everything after it is Hydra's (overrides and flags such as --cfg job)
_GLOBAL_WITH_VALUE = ("--storage-root", "--registry", "--stale-after-s")


def _run(spec, resume: bool, display: str = "auto") -> None:
    from hpo.reporting.summary import format_summary
    from hpo.study.launch import JOB_ID_ENV
    from hpo.study.run import run_study

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
    print(format_summary(outcome), flush=True)
    if outcome.best_value is None:
        sys.exit(1)


def _spec(cfg, where: str = ""):
    from hpo.config.compose import build_spec

    try:
        return build_spec(cfg)
    except ConfigError as err:
        fail(f"config error{where}: {err}")


def cmd_sweep(args: argparse.Namespace) -> None:
    import hydra

    overrides = list(args.overrides)
    for option, key in ((args.storage_root_given, "storage.root"), (args.registry, "registry.url")):
        if option and not any(o.startswith(f"{key}=") for o in overrides):
            overrides.insert(0, f"{key}={option}")
    register()
    from hpo.config.overrides import check_overrides

    try:
        check_overrides(overrides)
    except ConfigError as err:
        fail(f"config error: {err}")
    task = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(
        lambda cfg: _run(_spec(cfg), resume=False, display=_display(args)))
    sys.argv = ["hpo sweep", *overrides]
    task()


def cmd_launch(args: argparse.Namespace) -> None:
    from hpo.config.compose import compose
    from hpo.study.launch import launch_study

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
    from hpo.study.launch import follow

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


def _display(args: argparse.Namespace) -> str:
    """Live progress in a terminal, plain lines when piped; ``--quiet``: the summary only."""
    return "quiet" if args.quiet else "auto"


def cmd_run(args: argparse.Namespace) -> None:
    register()
    _run(_spec(OmegaConf.load(args.config)), resume=False, display=_display(args))


def cmd_resume(args: argparse.Namespace) -> None:
    registry = open_registry(args)
    s = require(registry, args.name)
    if s.status == StudyStatus.COMPLETED:
        from hpo.cli.study_commands import finish_closing

        closed = finish_closing(registry, s)  # its driver died while closing it: the MLflow run and report
        print(f"study {s.name} already completed ({s.stop_reason}); nothing to resume"
              + ("; its MLflow run and report, left open when its driver stopped, are now closed" if closed else ""))
        return
    from hpo.config.compose import stored_config

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
        from hpo.study.launch import launch_resume

        dashboard_url = args.dashboard_url or stored.cluster.get("dashboard_url")
        if not dashboard_url:
            fail(f"study {s.name} has no cluster.dashboard_url; pass --dashboard-url http://HEAD:8265")
        job_id = launch_resume(s.name, stored.registry.get("url"), str(stored.storage.root), dashboard_url)
        print(f"resuming study {s.name} as Ray job {job_id} on {dashboard_url}", flush=True)
        if args.follow:
            _follow(dashboard_url, job_id)
        return
    spec = _spec(stored, where=f" in the stored config of {s.name}")
    if spec.storage.registry_url != registry.url:
        fail(f"study {s.name} was recorded with registry {redact_url(spec.storage.registry_url)}, "
             f"not {redact_url(registry.url)}")
    _run(spec, resume=True, display=_display(args))


def _defaults() -> dict:
    """The CLI's defaults, read from conf/config.yaml (the sweep's own defaults)."""
    root = OmegaConf.load(CONFIG_DIR / "config.yaml")
    return {"storage_root": str(root.storage.root), "stale_after_s": float(root.registry.stale_after_s)}


def parser() -> argparse.ArgumentParser:
    defaults = _defaults()
    p = argparse.ArgumentParser(prog="hpo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--storage-root", dest="storage_root_given", metavar="DIR",
                   help=f"the sweep's storage.root (default: storage.root in conf/, now {defaults['storage_root']})")
    p.add_argument("--registry", help="the registry URL, when not sqlite under --storage-root")
    p.add_argument("--quiet", action="store_true", help="sweep/run/resume: print only the study's summary "
                                                          "(also accepted among a sweep's overrides)")
    p.add_argument("--stale-after-s", type=float, default=defaults["stale_after_s"],
                   help="a silent driver counts as gone after this (registry.stale_after_s)")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, *arguments: tuple[tuple, dict]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.set_defaults(func=func)
        return sub

    overrides = (("overrides",), {"nargs": argparse.REMAINDER, "help": "Hydra overrides (key=value ...)"})
    name = (("name",), {"help": "the study's name"})
    command("sweep", cmd_sweep, "run a study: hpo sweep [HYDRA OVERRIDES] [--cfg job]", overrides)
    command("launch", cmd_launch, "submit a study's driver to a Ray cluster as a Ray Job",
            (("--follow",), {"action": "store_true", "help": "stream the job's log until it ends"}),
            (("--no-local-check",), {"action": "store_true", "help": "data or model exist only on the cluster"}),
            overrides)
    command("run", cmd_run, "run a study from a composed config file (what `hpo launch` submits)",
            (("config",), {"help": "a composed study.yaml"}))
    command("list", cmd_list, "list studies")
    command("status", cmd_status, "one study, trial by trial", name)
    command("stop", cmd_stop, "stop a running study gracefully", name,
            (("--wait",), {"type": float, "default": 0.0, "help": "seconds to wait for the driver to stop"}))
    command("resume", cmd_resume, "continue a crashed or stopped study", name,
            (("--launch",), {"action": "store_true", "help": "resume it on the cluster as a Ray job"}),
            (("--dashboard-url",), {"help": "the cluster's job server (default: the study's cluster.dashboard_url)"}),
            (("--follow",), {"action": "store_true", "help": "with --launch: stream the job's log until it ends"}),
            (("overrides",), {"nargs": "*", "metavar": "KEY=URL", "help": "a service URL again, with the "
                              "credentials the study was stored without (e.g. storage.optuna_url=postgresql://...)"}))
    command("best", cmd_best, "the best trial of a study", name,
            (("--format",), {"choices": ("text", "yaml", "overrides"), "default": "text"}))
    command("report", cmd_report, "draw the study's report (PNG, HTML, Markdown) again", name,
            (("--to",), {"metavar": "DIR", "help": "write it here (default: the study's folder and its MLflow run)"}))
    command("ui", cmd_ui, "serve the MLflow UI for a study's store and print its runs page",
            (("name",), {"nargs": "?", "help": "the study (default: the latest)"}),
            (("--open",), {"action": "store_true", "help": "open the page in your browser"}),
            (("--port",), {"type": int, "default": 5000}),
            (("--host",), {"default": "127.0.0.1", "help": "bind here (default 127.0.0.1: this machine only)"}))
    model_uri = (("--model-uri",), {"help": "another model (default: models:/NAME@champion, the study's best)"})
    command("export", cmd_export, "write the best model as a Hugging Face folder with a model card (and ONNX)",
            name, (("--to",), {"metavar": "DIR", "required": True, "help": "a new or empty folder"}),
            (("--onnx",), {"action": "store_true", "help": "also model.onnx, checked against PyTorch"}), model_uri)
    command("predict", cmd_predict, "classify texts with the study's best model", name,
            (("texts",), {"nargs": "*", "metavar": "TEXT"}),
            (("--file",), {"help": "one text per line"}), model_uri)
    command("refit", cmd_refit, "train the best config again (its best epoch count) and register it", name,
            (("--with-validation",), {"action": "store_true", "help": "train on training + validation rows"}),
            (("overrides",), {"nargs": "*", "metavar": "KEY=VALUE", "help": "e.g. study.seed=1 trainer.num_threads=4"}))
    command("ensemble", cmd_ensemble, "average the top trials' probabilities into one model; evaluate and register it",
            name, (("--top",), {"type": int, "default": 3, "metavar": "K", "help": "how many trials (default 3)"}))
    return p


def _separate_pass_through(argv: list[str]) -> list[str]:
    """``hpo sweep --cfg job``: a ``--`` after ``sweep`` keeps argparse from reading Hydra's flags as its own."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _GLOBAL_WITH_VALUE else 1
    if i < len(argv) and argv[i] in PASS_THROUGH and argv[i + 1:i + 2] not in (["-h"], ["--help"]):
        return [*argv[:i + 1], "--", *argv[i + 1:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    from hpo.env import set_defaults

    set_defaults()
    args = parser().parse_args(_separate_pass_through(sys.argv[1:] if argv is None else argv))
    if getattr(args, "overrides", None) and args.overrides[0] == "--":
        args.overrides = args.overrides[1:]
    if args.command == "sweep" and "--quiet" in args.overrides:
        args.quiet, args.overrides = True, [o for o in args.overrides if o != "--quiet"]
    launch_flags = {"--follow", "--no-local-check"}  # also accepted after the overrides
    if args.command == "launch":
        args.follow |= "--follow" in args.overrides
        args.no_local_check |= "--no-local-check" in args.overrides
        args.overrides = [o for o in args.overrides if o not in launch_flags]
    args.storage_root = args.storage_root_given or _defaults()["storage_root"]
    args.func(args)
