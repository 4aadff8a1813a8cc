"""``hpo distill NAME --student MODEL``: study NAME's winner taught to a small model (:mod:`hpo.models.distill`).

One command does it all and can be run again: a new student study is composed and run; one already recorded is
resumed (after a crash or a stop) or, once completed, only registered again. ``--with-plain`` first runs the same
student on the labels alone with the same budget (``NAME-plain-MODEL``), when NAME did not search that model. The
best student is then copied beside the teacher as ``models:/NAME@distilled``, and both studies' reports show
teacher, plain and distilled student.
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import DictConfig

from hpo.cli._common import fail, open_registry, require
from hpo.cli._run_commands import display_of, run_and_exit, run_or_fail, spec_or_fail
from hpo.cli._view_commands import redraw_report
from hpo.config.compose import stored_config, stored_storage
from hpo.config.resolvers import register
from hpo.config.spec import StudySpec
from hpo.errors import ConfigError
from hpo.models.distill import distill_config
from hpo.reporting._distillation import comparison
from hpo.states import StudyStatus
from hpo.stores.model_runs import register_distilled
from hpo.stores.registry import Registry, StudyRecord


def cmd_distill(args: argparse.Namespace) -> None:
    register()
    registry = open_registry(args)
    teacher = require(registry, args.name)
    if teacher.best_metric is None or not teacher.best_model_uri:
        fail(f"study {teacher.name!r} has no registered best model to teach with: let it finish a trial with "
             "tracking.register_best=true (or pass the teacher as distill.teacher=models:/NAME/VERSION to hpo sweep)")
    given = [registry.url]
    try:
        cfg = distill_config(teacher, args.student, args.teacher, args.overrides, given)
    except ConfigError as err:
        fail(f"config error: {err}")
    if not cfg.tracking.register_best:
        fail("config error: tracking.register_best: hpo distill registers the best student beside the teacher; "
             "leave it true")
    if args.with_plain:  # the small model on the labels alone, same budget: the comparison's middle row
        try:
            plain = distill_config(teacher, args.student, None, args.overrides, given)
        except ConfigError as err:
            fail(f"config error: {err}")
        _run_plain(registry, plain, given, display_of(args))
    name = str(cfg.study.name)
    if (existing := registry.get(name)) is not None and existing.status == StudyStatus.COMPLETED:
        print(f"study {name} already completed; registering its best student again", flush=True)
        if existing.best_metric is None:
            fail(f"study {name} found no best trial; nothing to register", code=1)
        _register(registry, teacher, name)
        return
    print(f"distilling {teacher.name} ({cfg.distill.teacher}) into {args.student}: study {name}", flush=True)
    spec, resume = _to_run(existing, cfg, given)
    run_and_exit(spec, resume, display=display_of(args), then=lambda _: _register(registry, teacher, name))


def _to_run(existing: StudyRecord | None, cfg: DictConfig, given: list[str]) -> tuple[StudySpec, bool]:
    """A new study's spec, or (resume) the recorded one's, from its stored config."""
    if existing is None:
        return spec_or_fail(cfg), False
    print(f"resuming study {existing.name} ({existing.status.value})", flush=True)
    stored = stored_config(existing.config_yaml, given)
    return spec_or_fail(stored, where=f" in the stored config of {existing.name}"), True


def _run_plain(registry: Registry, cfg: DictConfig, given: list[str], display: str) -> None:
    """The plain student study: run, resumed, or (completed) left as it is."""
    existing = registry.get(str(cfg.study.name))
    if existing is not None and existing.status == StudyStatus.COMPLETED:
        print(f"plain student study {existing.name} already completed", flush=True)
        return
    print(f"plain student study {cfg.study.name}", flush=True)
    outcome = run_or_fail(*_to_run(existing, cfg, given), display=display)
    if outcome.exit_code is not None:
        sys.exit(outcome.exit_code)


def _register(registry: Registry, teacher: StudyRecord, name: str) -> None:
    """Student study ``name``'s champion as ``models:/TEACHER@distilled``; both reports drawn with the comparison."""
    record = registry.require(name)
    value = record.best_metric
    assert value is not None, "called once the student study has a best trial"
    tracking_uri = stored_storage(record, [registry.url]).tracking_uri
    uri = register_distilled(tracking_uri, teacher.name, name, value)
    print(f"best student of {name} registered as {uri} (alias distilled; models:/{teacher.name}@distilled)")
    for row in comparison(registry, tracking_uri, teacher.name, name):
        facts = ", ".join(f"{k} {v:.4g}" for k, v in row.metrics.items()) or "no finished trial"
        print(f"  {row.role:<17} {row.model:<24} {facts}")
    for study in (teacher, record):
        redraw_report(registry, registry.require(study.name))
