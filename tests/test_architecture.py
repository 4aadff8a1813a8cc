"""The architecture as facts that fail when broken: the import graph's rules (tests/helpers/import_graph.py), one
writer per store, and a public API that stays light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import import_graph

ROOT = Path(__file__).resolve().parents[1]
HPO = ROOT / "hpo"
SUBPACKAGES = ("config", "stores", "study", "models", "reporting", "cli")
# MLflow client methods that change what MLflow holds.
MLFLOW_WRITES = {"create_experiment", "create_run", "update_run", "set_terminated", "log_batch", "log_param",
                 "log_metric", "log_text", "log_dict", "log_artifact", "log_artifacts", "log_inputs", "set_tag",
                 "set_registered_model_alias", "set_model_version_tag", "log_model", "set_tracking_uri",
                 "copy_model_version"}
OPTUNA_WRITES = {"ask", "tell", "enqueue_trial", "set_user_attr", "set_constraint"}


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text()) for p in sorted(HPO.rglob("*.py"))
            if "migrations" not in p.parts}


def _calls(tree: ast.Module) -> list[tuple[str, int]]:
    """(called attribute or name, line) of every call."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name:
                found.append((name, node.lineno))
    return found


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_import_graph_keeps_its_rules():
    graph = import_graph.build()
    assert import_graph.problems(graph) == []
    assert not graph.cycles()


def test_every_subpackage_says_what_lives_there_and_what_it_may_import():
    for name in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((HPO / name / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"hpo/{name}/__init__.py"


def test_mlflow_is_written_from_the_stores_only_through_one_client_factory():
    writers, clients = set(), set()
    for path, tree in _modules().items():
        for name, line in _calls(tree):
            if name in MLFLOW_WRITES:
                writers.add(path)
            if name == "MlflowClient":
                clients.add(f"{path}:{line}")
    assert writers and all(w.startswith("hpo/stores/") for w in writers), sorted(writers)
    assert clients == {c for c in clients if c.startswith("hpo/stores/tracking.py:")} and len(clients) == 1, clients


def test_the_registry_sql_lives_in_the_registry_module():
    users = {path for path, tree in _modules().items() if "sqlalchemy" in _imports(tree)}
    assert users == {"hpo/stores/registry.py", "hpo/stores/records.py", "hpo/stores/_db_retry.py"}


def test_optuna_is_written_by_the_ledger_only():
    writers = {path for path, tree in _modules().items() for name, _ in _calls(tree) if name in OPTUNA_WRITES}
    assert writers == {"hpo/study/ledger.py", "hpo/study/_ledger_writes.py"}, "the ledger (StudyLedger and its base)"


def test_the_public_api_resolves_every_name():
    import hpo

    assert hpo.__all__ == sorted(hpo.__all__) and set(hpo.__all__) == set(hpo._EXPORTS)
    for name in hpo.__all__:
        assert getattr(hpo, name) is not None, name
    with pytest.raises(AttributeError):
        hpo.no_such_name  # noqa: B018


def test_importing_hpo_does_not_import_the_driver_stack():
    """A Ray worker imports hpo.study.trial, and `hpo list` the registry: neither pays for Ray Tune, MLflow or
    Optuna's plots through hpo/__init__.py."""
    probe = "import sys, hpo; print(sorted(m for m in ('ray', 'mlflow', 'optuna', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_hpo_holds_no_text_specific_code():
    """hpo talks to tasks through trainers.tasks only: no tokenizer, tokens or text columns (``grep`` as a test)."""
    text_terms = ("tokeniz", "input_ids", "attention_mask", "text_column", "autotokenizer")
    code = {path: "\n".join(line for line in (ROOT / path).read_text().lower().splitlines()
                             if not line.strip().startswith((">>>", "...")))  # doctests build real task data
            for path in _modules()}
    found = [(path, term) for path, text in code.items() for term in text_terms if term in text]
    assert found == []
    importers = {path for path, tree in _modules().items() if "transformers" in _imports(tree)}
    assert importers == set()
