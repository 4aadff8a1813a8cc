"""The ``hpo`` command. ``hpo sweep [HYDRA OVERRIDES]`` composes ``conf/`` and runs a study.

    hpo sweep experiment=sst2_minilm
    hpo sweep experiment=sst2_minilm sampler=random scheduler=fifo study.num_samples=2
    hpo sweep --cfg job            # print the composed config and exit
"""

from __future__ import annotations

import sys

from hpo.errors import ConfigError
from hpo.resolvers import CONFIG_DIR, register

USAGE = """usage: hpo COMMAND [ARGS]

commands:
  sweep [OVERRIDES]   compose conf/ with Hydra overrides and run the study
                      (hpo sweep --help lists the config groups; --cfg job prints the config)
"""


def _sweep_task(cfg) -> None:
    from hpo.config import build_spec

    try:
        spec = build_spec(cfg)
    except ConfigError as err:
        print(f"hpo: config error: {err}", file=sys.stderr)
        sys.exit(2)
    from hpo.summary import format_summary
    from hpo.tuner import run_study

    try:
        outcome = run_study(spec)
    except ConfigError as err:
        print(f"hpo: config error: {err}", file=sys.stderr)
        sys.exit(2)
    print(format_summary(outcome, spec.metric), flush=True)
    if outcome.best_value is None:
        sys.exit(1)


def sweep(args: list[str]) -> None:
    import hydra

    register()
    task = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_sweep_task)
    sys.argv = ["hpo sweep", *args]
    task()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "sweep":
        sweep(rest)
    else:
        print(f"hpo: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
