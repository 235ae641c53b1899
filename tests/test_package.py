"""The package's shape: data flows one way, so no module imports, even inside a function, one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import shardwise

SRC = Path(shardwise.__file__).parent.parent


def _modules() -> dict[str, Path]:
    return {".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): f
            for f in SRC.glob("shardwise/**/*.py")}


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parent + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Each shardwise module and the shardwise modules it imports anywhere in its file."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _imported(node, package):
                while target and target not in modules:  # `from shardwise.x import fn` depends on shardwise.x
                    target = target.rpartition(".")[0]
                deps.add(target)
        graph[name] = deps - {"", name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done, path = [], set(), []

    def visit(node: str) -> None:
        path.append(node)
        for dep in sorted(graph[node]):
            if dep in path:
                found.append(path[path.index(dep):] + [dep])
            elif dep not in done:
                visit(dep)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


def test_cycles_are_found():
    """The check itself: a two-module loop (the brief's old checkpoint <-> train) and a longer one are reported."""
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert {"shardwise.cli", "shardwise.train", "shardwise.plans.llama"} <= set(graph)
    assert "shardwise.model" in graph["shardwise.train"]  # imports are seen (a blind walk finds no cycle either)
    assert cycles(graph) == []
