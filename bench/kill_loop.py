"""A soak of the kill story: one study's driver SIGKILLed at many seeded random moments, `hpo resume` after each,
then the three stores checked against each other. The test suite's story (tests/reliability/test_driver_kills.py)
kills twice at random; this runs as many kills as asked, which is a soak, not a test a contributor waits for.

Prints each kill's moment (trials finished / epochs recorded), how many landed before the study ended, and whether
the registry, Optuna and MLflow agree at the end (exit 1 if they do not).

    python -m bench.kill_loop [--kills 20] [--trials 8] [--seed 11] [--out bench/results/kill_loop.json]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from sqlalchemy.exc import SQLAlchemyError

from bench.common import write
from hpo.stores.registry import Registry
from tests.helpers.stores import assert_stores_agree

NAME = "kill_loop"


def _driver(args: list[str], root: Path, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "hpo", *args], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HPO_STORAGE_ROOT": str(root)})


def _epochs(url: str) -> tuple[int, int]:
    """(trials finished, epochs recorded) so far; (0, 0) before the driver has created the registry."""
    if not Path(url.removeprefix("sqlite:///")).exists():
        return 0, 0
    try:
        trials = Registry(url).trials(NAME)
    except SQLAlchemyError:  # the tables do not exist yet
        return 0, 0
    return sum(t.state.finished for t in trials), sum(t.epochs for t in trials)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the driver, then whatever of its Ray it left behind."""
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--kills", type=int, default=20)
    cli.add_argument("--trials", type=int, default=8)
    cli.add_argument("--seed", type=int, default=11)
    cli.add_argument("--out", type=Path)
    args = cli.parse_args()
    rng, root = random.Random(args.seed), Path(tempfile.mkdtemp(prefix="hpo-kill-loop-"))
    url, log = f"sqlite:///{root}/registry.db", root / "drivers.log"
    proc = _driver(["sweep", "model=tiny_bert", "data.train_limit=1000", "data.validation_limit=200",
                    "trainer.max_epochs=3", "scheduler=asha", "study.max_concurrent=2", "cluster.num_cpus=2",
                    "registry.heartbeat_s=1", f"study.name={NAME}", f"study.num_samples={args.trials}",
                    f"storage.root={root}"], root, log)
    moments: list[str] = []
    for _ in range(args.kills):
        target = _epochs(url)[1] + rng.choice([0, 1, 1, 2])
        while proc.poll() is None and _epochs(url)[1] < target:
            time.sleep(0.5)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        finished, epochs = _epochs(url)
        moments.append(f"{finished}/{epochs}")
        print(f"kill {len(moments)}: {finished} trials finished, {epochs} epochs recorded", flush=True)
        _kill(proc)
        proc = _driver(["resume", NAME], root, log)
    code = proc.wait()
    try:
        stores = assert_stores_agree(url, f"sqlite:///{root}/mlflow.db", NAME)
        agree, trials = True, len(stores["registry"])
    except AssertionError as err:
        agree, trials = False, -1
        print(f"the stores disagree: {err}")
    result = {"kills_asked": args.kills, "kills_landed": len(moments), "moments_finished_over_epochs": moments,
              "last_exit_code": code, "trials": trials, "trials_asked": args.trials, "stores_agree": agree,
              "log": str(log)}
    print(f"{len(moments)} of {args.kills} kills landed before the study ended; last resume exit {code}; "
          f"{trials} of {args.trials} trials; stores agree: {agree}")
    write(result, args.out)
    sys.exit(0 if agree and code == 0 and trials == args.trials else 1)


if __name__ == "__main__":
    main()
