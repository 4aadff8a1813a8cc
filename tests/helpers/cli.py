"""`hpo` commands run in this process, as the console script runs them (``hpo.cli.main.main`` with the same argv).

A subprocess proves nothing more for a command nobody kills or signals and costs seconds of imports each time
(torch, transformers, Ray, MLflow): the suite runs those in-process and keeps a handful of real subprocess runs
in tests/test_cli.py (exit codes, the console script, stdout against stderr). A command that runs a study
in-process runs it on this process's Ray (:func:`session_ray`), started once for the whole pytest run: no Ray start
and stop per study.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ray

from hpo.cli.main import main

STUDY_COMMANDS = ("sweep", "resume", "distill")  # those that run a study, on this process's Ray


def session_ray() -> None:
    """This process's Ray (2 CPUs, no dashboard), started on first use and kept until the pytest run ends
    (tests/conftest.py stops it): the in-process studies and the ``local_ray`` fixture share it."""
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _descriptor_to(fd: int, into) -> Iterator[None]:
    """What a library writes to file descriptor ``fd`` itself (not through ``sys.stdout``) goes to ``into`` too."""
    saved = os.dup(fd)
    os.dup2(into.fileno(), fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def run_in_process(args: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None
                   ) -> subprocess.CompletedProcess:
    """``hpo ARGS`` in this process with ``env`` added to the environment and ``cwd`` as the working folder: its
    exit code (0, or what ``SystemExit`` carried) and what it printed, as a finished subprocess would give them."""
    if any(command in args for command in STUDY_COMMANDS):
        session_ray()
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with tempfile.TemporaryFile("w+") as fd_out, tempfile.TemporaryFile("w+") as fd_err, _environment(env), \
            contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            _descriptor_to(1, fd_out), _descriptor_to(2, fd_err):
        saved_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin or "")
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.stdin = saved_stdin
            sys.stdout.flush()
            sys.stderr.flush()
        fd_out.seek(0)
        fd_err.seek(0)
        written_out, written_err = fd_out.read(), fd_err.read()
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    stderr = err.getvalue() + written_err + ("" if isinstance(code, int | None) else f"{code}\n")
    return subprocess.CompletedProcess(["hpo", *args], returncode, out.getvalue() + written_out, stderr)
