"""The package's import graph: no cycles, and every import points down the layers.

Every module under ``livestream/`` is parsed with :mod:`ast` and every import is an
edge, including imports inside functions ("lazy" imports are still dependencies:
they only move the failure to run time). Imports under ``if TYPE_CHECKING:`` are
left out of the cycle check (they never run) but count for the layers (a type
from a higher layer is still a dependency on it).

The layers, bottom to top (``docs/decisions.md``, "Layers point one way")::

    errors  _version  _compat  loop  redact  cells
    core                                  pure: topics, schemas, windows
    protocol                              pure: messages and codecs
    backplane         client  views       where topics live (Redis keeps Arrow bytes) | subscriptions | drawing
    server            notebook            Tornado server | Jupyter widgets
                      dashboard           layouts, Bokeh server apps, static pages
    demo
    cli                                   the `livestream` command and its plug-ins
    livestream/__init__.py                the public API: imports anything, imported by nothing

A group may import the groups listed under it in :data:`BELOW` and, transitively,
what those may import; nothing else. Within a group, modules may import each
other, but not in a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "livestream"

#: group → the groups directly below it (see the module doc)
BELOW: dict[str, tuple[str, ...]] = {
    "errors": (),
    "_version": (),
    "_compat": (),
    "loop": (),
    "redact": (),
    "cells": (),
    "core": ("errors", "_compat"),
    "protocol": ("core",),
    "backplane": ("protocol",),  # a shared backplane stores encoded (Arrow) batches
    "server": ("backplane", "protocol", "loop", "_version", "cells"),
    "client": ("protocol", "loop", "cells"),
    "views": ("core", "_compat"),
    "notebook": ("views", "client"),
    "dashboard": ("notebook",),
    "demo": ("dashboard", "server"),
    "cli": ("demo",),
}


def allowed(group: str) -> set[str]:
    """Every group ``group`` may import (transitively below it), itself included."""
    seen = {group}
    todo = list(BELOW[group])
    while todo:
        g = todo.pop()
        if g not in seen:
            seen.add(g)
            todo.extend(BELOW[g])
    return seen


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def group_of(module: str) -> str | None:
    """The layer group of a module (None for the root package, ``livestream``)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return parts[1]


class Edge:
    def __init__(self, source: str, target: str, line: int, type_only: bool) -> None:
        self.source, self.target, self.line, self.type_only = source, target, line, type_only

    def __repr__(self) -> str:
        where = f"{MODULES[self.source].relative_to(PKG.parent)}:{self.line}"
        return f"{self.source} -> {self.target} ({where}{', TYPE_CHECKING' if self.type_only else ''})"


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), type_only)
        else:
            yield from _imports(node, type_only)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str) -> str | None:
    """The livestream module ``name`` refers to (its package if it is not a module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def edges() -> list[Edge]:
    out = []
    seen: set[tuple[str, str, int]] = set()
    for module, path in MODULES.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, type_only in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _resolve(module, is_pkg, node)
                # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                           for a in node.names]
            for t in targets:
                if not (t == "livestream" or t.startswith("livestream.")):
                    continue
                target = _target(t)
                key = (module, target, node.lineno)
                if target is not None and target != module and key not in seen:
                    seen.add(key)
                    out.append(Edge(module, target, node.lineno, type_only))
    return out


EDGES = edges()


def cycles(edge_list: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in edge_list:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    unknown = sorted({g for m in MODULES if (g := group_of(m)) is not None and g not in BELOW})
    assert not unknown, f"modules outside the layer table BELOW: {unknown}"


def test_no_import_cycles() -> None:
    found = cycles([e for e in EDGES if not e.type_only])
    detail = []
    for comp in found:
        members = set(comp)
        detail += [f"  {e!r}" for e in EDGES
                   if e.source in members and e.target in members and not e.type_only]
    assert not found, "import cycles:\n" + "\n".join(
        [", ".join(c) for c in found] + detail)


def test_nothing_imports_the_root_package() -> None:
    bad = [e for e in EDGES if e.target == "livestream"]
    assert not bad, "modules importing livestream/__init__ (import from the module itself):\n" \
        + "\n".join(f"  {e!r}" for e in bad)


def test_imports_point_down() -> None:
    bad = []
    for e in EDGES:
        src, dst = group_of(e.source), group_of(e.target)
        if src is None or dst is None or src not in BELOW or dst not in BELOW:
            continue
        if dst not in allowed(src):
            bad.append(e)
    assert not bad, "imports that point up or sideways:\n" + "\n".join(f"  {e!r}" for e in bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: a function-level import and a relative import are edges."""
    src = ("from .. import errors\n"
           "from typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from ..server import app\n"
           "def f():\n    from ..notebook import chart\n    import livestream.views\n")
    tree = ast.parse(src)
    found = [(getattr(n, "level", 0), getattr(n, "module", None), t) for n, t in _imports(tree)]
    assert (2, "server", True) in found
    assert (2, "notebook", False) in found
    assert (0, None, False) in found  # ``import livestream.views`` (ast.Import)
    node = next(n for n, _ in _imports(tree) if isinstance(n, ast.ImportFrom)
                and n.module == "notebook")
    assert _resolve("livestream.client.subscription", False, node) == "livestream.notebook"
    assert cycles([]) == []


@pytest.mark.parametrize("group", sorted(BELOW))
def test_layer_table_has_no_cycles(group: str) -> None:
    """A group is never below itself through others (the table is a DAG)."""
    for below in BELOW[group]:
        assert group not in allowed(below), f"{group} and {below} are below each other"
