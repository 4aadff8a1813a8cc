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
    hpo predict NAME [INPUT ...] [--file F]     # labels and probabilities, or scores (inputs from stdin if none)
    hpo refit NAME [--with-validation] [K=V...] # the best config trained again for its best epochs, registered
    hpo ensemble NAME [--top K]                 # the top K trials' probabilities averaged, evaluated, registered
    hpo distill NAME --student MODEL [K=V...]   # NAME's winner taught to a small model: a study, @distilled

Global options (before the subcommand) say where the registry is; their defaults come from conf/config.yaml.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from omegaconf import OmegaConf

from hpo.config.resolvers import CONFIG_DIR
from hpo.env import set_defaults

PASS_THROUGH = ("sweep",)  # everything after it is Hydra's (overrides and flags such as --cfg job)
_GLOBAL_WITH_VALUE = ("--storage-root", "--registry", "--stale-after-s")
# Each command's module is imported when that command runs, as pip's command table does: ``hpo list`` needs the
# registry, not Ray, MLflow and matplotlib (seconds of imports). tests/test_architecture.py reads these names
# into the import graph, so they are not hidden from it.
COMMANDS = {
    "sweep": "hpo.cli._run_commands:cmd_sweep",
    "launch": "hpo.cli._run_commands:cmd_launch",
    "run": "hpo.cli._run_commands:cmd_run",
    "resume": "hpo.cli._run_commands:cmd_resume",
    "list": "hpo.cli._study_commands:cmd_list",
    "status": "hpo.cli._study_commands:cmd_status",
    "stop": "hpo.cli._study_commands:cmd_stop",
    "best": "hpo.cli._study_commands:cmd_best",
    "report": "hpo.cli._view_commands:cmd_report",
    "ui": "hpo.cli._view_commands:cmd_ui",
    "export": "hpo.cli._model_commands:cmd_export",
    "predict": "hpo.cli._model_commands:cmd_predict",
    "refit": "hpo.cli._model_commands:cmd_refit",
    "ensemble": "hpo.cli._model_commands:cmd_ensemble",
    "distill": "hpo.cli._distill_command:cmd_distill",
}


def command_function(name: str) -> Callable[[argparse.Namespace], None]:
    """The function that runs command ``name`` (its module imported now)."""
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)


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

    def command(name: str, help: str, *arguments: tuple[tuple, dict]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        return sub

    overrides = (("overrides",), {"nargs": argparse.REMAINDER, "help": "Hydra overrides (key=value ...)"})
    name = (("name",), {"help": "the study's name"})
    command("sweep", "run a study: hpo sweep [HYDRA OVERRIDES] [--cfg job]", overrides)
    command("launch", "submit a study's driver to a Ray cluster as a Ray Job",
            (("--follow",), {"action": "store_true", "help": "stream the job's log until it ends"}),
            (("--no-local-check",), {"action": "store_true", "help": "data or model exist only on the cluster"}),
            overrides)
    command("run", "run a study from a composed config file (what `hpo launch` submits)",
            (("config",), {"help": "a composed study.yaml"}))
    command("list", "list studies")
    command("status", "one study, trial by trial", name)
    command("stop", "stop a running study gracefully", name,
            (("--wait",), {"type": float, "default": 0.0, "help": "seconds to wait for the driver to stop"}))
    command("resume", "continue a crashed or stopped study", name,
            (("--launch",), {"action": "store_true", "help": "resume it on the cluster as a Ray job"}),
            (("--dashboard-url",), {"help": "the cluster's job server (default: the study's cluster.dashboard_url)"}),
            (("--follow",), {"action": "store_true", "help": "with --launch: stream the job's log until it ends"}),
            (("overrides",), {"nargs": "*", "metavar": "KEY=URL", "help": "a service URL again, with the "
                              "credentials the study was stored without (e.g. storage.optuna_url=postgresql://...)"}))
    command("best", "the best trial of a study", name,
            (("--format",), {"choices": ("text", "yaml", "overrides"), "default": "text"}))
    command("report", "draw the study's report (PNG, HTML, Markdown) again", name,
            (("--to",), {"metavar": "DIR", "help": "write it here (default: the study's folder and its MLflow run)"}))
    command("ui", "serve the MLflow UI for a study's store and print its runs page",
            (("name",), {"nargs": "?", "help": "the study (default: the latest)"}),
            (("--open",), {"action": "store_true", "help": "open the page in your browser"}),
            (("--port",), {"type": int, "default": 5000}),
            (("--host",), {"default": "127.0.0.1", "help": "bind here (default 127.0.0.1: this machine only)"}))
    model_uri = (("--model-uri",), {"help": "another model (default: models:/NAME@champion, the study's best)"})
    command("export", "write the best model's folder with a model card (and ONNX)",
            name, (("--to",), {"metavar": "DIR", "required": True, "help": "a new or empty folder"}),
            (("--onnx",), {"action": "store_true", "help": "also model.onnx, checked against PyTorch"}), model_uri)
    command("predict", "predict with the study's best model: texts, text pairs (tab-separated) or image files", name,
            (("texts",), {"nargs": "*", "metavar": "INPUT"}),
            (("--file",), {"help": "one input per line"}), model_uri)
    command("refit", "train the best config again (its best epoch count) and register it", name,
            (("--with-validation",), {"action": "store_true", "help": "train on training + validation rows"}),
            (("overrides",), {"nargs": "*", "metavar": "KEY=VALUE", "help": "e.g. study.seed=1 trainer.num_threads=4"}))
    command("ensemble", "average the top trials' predictions into one model; evaluate and register it",
            name, (("--top",), {"type": int, "default": 3, "metavar": "K", "help": "how many trials (default 3)"}))
    command("distill", "train a small model on study NAME's winner (its own study, resumable by running this again); "
            "register its best as models:/NAME@distilled", name,
            (("--student",), {"required": True, "metavar": "MODEL",
                              "help": "a conf/model/ name (minilm_l6, efficientnet_lite0...), a folder or a hub name"}),
            (("--teacher",), {"default": "champion", "metavar": "ALIAS",
                              "help": "the version of NAME's registered model that teaches (default champion)"}),
            (("--with-plain",), {"action": "store_true", "help": "first train the student on the labels alone with "
                                 "the same budget (study NAME-plain-MODEL), for the comparison"}),
            (("overrides",), {"nargs": "*", "metavar": "KEY=VALUE",
                              "help": "e.g. study.num_samples=8 search.distill_alpha=0.5 study.name=my_student"}))
    return p


def _separate_pass_through(argv: list[str]) -> list[str]:
    """``hpo sweep --cfg job``: a ``--`` after ``sweep`` keeps argparse from reading Hydra's flags as its own."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _GLOBAL_WITH_VALUE else 1
    if i < len(argv) and argv[i] in PASS_THROUGH and argv[i + 1:i + 2] not in (["-h"], ["--help"]):
        return [*argv[:i + 1], "--", *argv[i + 1:]]
    return argv


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line as a command and its arguments. argparse takes a command's KEY=VALUE overrides only before
    its flags (``hpo distill NAME --student M K=V``): the ones after them come back unparsed and join the others."""
    cli = parser()
    args, extra = cli.parse_known_args(_separate_pass_through(argv))
    given = getattr(args, "overrides", None)
    if extra and isinstance(given, list) and all("=" in e[1:] and e[0] != "-" for e in extra):
        args.overrides = [*given, *extra]
    elif extra:
        cli.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> None:
    set_defaults()
    args = parse(sys.argv[1:] if argv is None else argv)
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
    command_function(args.command)(args)
