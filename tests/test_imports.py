"""slimlib's imports: no cycle between its modules, and ``import slimlib`` loads no Sphinx.

The import graph is read from the source with :mod:`ast` (every ``import``,
including those inside functions: a lazy import is still a dependency, and a
cycle hidden in a function is still a cycle).  ``from . import x`` is an edge
to ``slimlib.x``; importing a name from a package is an edge to the package's
``__init__`` only when the name is not a submodule.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "slimlib"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Edges ``module -> modules of slimlib it imports`` for every module of slimlib."""
    files = {_module_name(p): p for p in PKG.rglob("*.py") if "_data" not in p.parts}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in files else base)
            for t in targets:
                while t and t not in files:        # "slimlib.io.x" -> "slimlib.io"
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_walker_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    g = import_graph()
    assert "slimlib._validate" in g["slimlib.io"] and "slimlib.model" in g["slimlib.io"]
    assert g["slimlib._validate"] == set()                 # the ground floor imports nothing of slimlib


def test_no_import_cycle_in_slimlib():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_only_io_imports_every_data_class():
    g = import_graph()
    classes = {"slimlib.model", "slimlib.stats", "slimlib.network", "slimlib.problem"}
    for mod in classes:
        assert "slimlib.io" not in g[mod], f"{mod} imports slimlib.io (header checks live in slimlib._validate)"


def _sphinxext_in_library() -> bool:
    return (PKG / "sphinxext.py").exists()


def test_import_slimlib_loads_no_sphinx():
    code = ("import sys, slimlib, slimlib.cli; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sphinx', 'docutils', 'myst_nb')); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import slimlib loaded {out}"


def test_the_sphinx_extension_is_not_part_of_the_library():
    assert not _sphinxext_in_library()
    assert not any("sphinx" in m for m in import_graph()), "a slimlib module is about Sphinx"
