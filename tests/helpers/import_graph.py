"""hpo's and trainers' import graph, read from the source with ``ast``: the architecture as a checkable fact.

``python -m tests.helpers.import_graph`` prints the facts (modules per subpackage, edges, the longest import chain,
cycles, in-function imports); ``--check`` exits 1 when a rule is broken (``make lint`` runs it; so does
tests/test_architecture.py). The rules:

- **Layers**: a package imports only packages below it (:data:`LAYERS`, top first); packages on one layer do not
  import each other. ``trainers`` (what runs inside a trial) never imports ``hpo``.
- **No cycles** between modules, counting in-function imports and the CLI's command table (:data:`COMMAND_TABLE`).
- **No in-function import of hpo's or trainers' own modules**; an in-function import of a library says why on its
  line (``# lazy: ...``).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hpo", "trainers")
LAYERS: list[tuple[str, ...]] = [  # top first
    ("hpo.cli",),
    ("hpo.study", "hpo.models"),
    ("hpo.reporting",),
    ("hpo.stores",),
    ("hpo.config",),
    ("hpo",),  # the shared modules at the top of the tree: errors, states, secrets, ranking, inference, ...
    ("trainers",),
]
COMMAND_TABLE = "hpo.cli.main"  # its COMMANDS name modules it imports when a command runs
LAZY_MARK = "# lazy:"


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)
    inner: list[tuple[str, int, str, bool]] = field(default_factory=list)  # module, line, statement, has a reason

    def layer(self, module: str) -> str:
        """The package a module belongs to in :data:`LAYERS` (the longest matching prefix)."""
        names = [n for layer in LAYERS for n in layer if module == n or module.startswith(n + ".")]
        return max(names, key=len)

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        found: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in self.edges.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        sys.setrecursionlimit(10_000)
        for v in sorted(self.modules):
            if v not in index:
                visit(v)
        return found

    def longest_chain(self, within: str = "") -> list[str]:
        """The longest import path through modules whose names start with ``within`` (the graph must be acyclic)."""
        memo: dict[str, list[str]] = {}

        def longest(v: str) -> list[str]:
            if v not in memo:
                tails = [longest(w) for w in self.edges.get(v, ()) if w.startswith(within)]
                memo[v] = [v, *max(tails, key=len, default=[])]
            return memo[v]

        return max((longest(v) for v in sorted(self.modules) if v.startswith(within)), key=len)

    def layer_violations(self) -> list[str]:
        rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
        bad = []
        for source, targets in sorted(self.edges.items()):
            if source in ("hpo", "hpo.__main__"):  # the lazy public API and `python -m hpo` sit above everything
                continue
            for target in sorted(targets):
                a, b = self.layer(source), self.layer(target)
                if a != b and rank[b] <= rank[a]:
                    bad.append(f"{source} -> {target} ({a} may not import {b})")
        return bad

    def inner_violations(self) -> list[str]:
        """In-function imports of hpo's or trainers' own modules, and of libraries without a reason."""
        return [f"{m}:{line}: {statement}" + ("" if _is_own(statement) else f"  (no '{LAZY_MARK} why' on its line)")
                for m, line, statement, has_reason in self.inner if _is_own(statement) or not has_reason]


def _is_own(statement: str) -> bool:
    return any(f" {p}." in statement or f" {p} " in statement or statement.endswith(f" {p}") for p in PACKAGES)


def _name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def build(root: Path = ROOT) -> Graph:
    graph = Graph()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.parts:
                graph.modules[_name(path, root)] = path
    for name, path in graph.modules.items():
        source = path.read_text()
        lines = source.splitlines()
        targets: set[str] = set()
        tree = ast.parse(source)
        in_functions = {n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                        for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                found = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            if node in in_functions:
                graph.inner.append((name, node.lineno, ast.unparse(node), LAZY_MARK in lines[node.end_lineno - 1]))
            targets |= {t for t in found if t in graph.modules and t != name}
            # `from hpo.x import y` names module hpo.x, not the package `hpo`
            targets -= {t for t in found[:1] if t in PACKAGES and len(found) > 1 and any(f in graph.modules
                                                                                         for f in found[1:])}
        if name == COMMAND_TABLE:
            namespace: dict = {}
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMMANDS" for t in node.targets):
                    namespace = ast.literal_eval(node.value)
            targets |= {v.split(":")[0] for v in namespace.values()}
        graph.edges[name] = targets
    return graph


def facts(graph: Graph) -> str:
    per_package = Counter(graph.layer(m) if m.startswith("hpo.") and graph.layer(m) != "hpo" else
                          ("hpo (shared)" if m.startswith("hpo") else "trainers") for m in graph.modules)
    lines = ["modules per package: " + ", ".join(f"{k} {v}" for k, v in sorted(per_package.items())),
             f"modules: {len(graph.modules)}, import edges: {sum(len(v) for v in graph.edges.values())}"]
    cycles = graph.cycles()
    lines.append(f"cycles: {len(cycles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in cycles))
    if not cycles:
        for within in ("hpo", ""):
            chain = graph.longest_chain(within)
            lines.append(f"longest import chain{' within hpo/' if within else ''} ({len(chain)} modules): "
                         + " -> ".join(chain))
    lines.append(f"in-function imports: {len(graph.inner)} "
                 f"({sum(m.startswith('hpo') for m, *_ in graph.inner)} in hpo/, "
                 f"{sum(m.startswith('trainers') for m, *_ in graph.inner)} in trainers/)")
    lines += [f"  {m}:{line}: {statement}" for m, line, statement, _ in graph.inner]
    return "\n".join(lines)


def problems(graph: Graph) -> list[str]:
    found = [f"cycle: {' <-> '.join(c)}" for c in graph.cycles()]
    found += [f"layer: {v}" for v in graph.layer_violations()]
    found += [f"in-function import: {v}" for v in graph.inner_violations()]
    found += [f"trainers imports hpo: {m} -> {t}" for m, ts in graph.edges.items() if m.startswith("trainers")
              for t in ts if t.startswith("hpo")]
    return found


if __name__ == "__main__":
    g = build()
    print(facts(g))
    if "--check" in sys.argv:
        bad = problems(g)
        print("\n".join(["", f"{len(bad)} problem(s):", *bad]) if bad else "\nno problems")
        sys.exit(1 if bad else 0)
