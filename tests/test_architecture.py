"""The shape of the code: no import cycles between pxp's modules, and a framework core that knows no
plugin, no task and no torch at import time (issue 12)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"core": "pxp.core", "experiment": "pxp.experiment", "plugins": "pxp.plugins"}


def _modules() -> dict[str, Path]:
    out = {}
    for top, pkg in LAYERS.items():
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO / top).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((pkg, *parts))] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every pxp module ``name`` imports, at module level or inside functions (both can form a cycle)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `from pkg import name`: the module pkg.name, else pkg
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a module's own package is not an edge
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycles_in_core_experiment_and_plugins():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the tree
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_point_one_way():
    """Plugins never import another plugin; experiment never imports a plugin; core imports no plugin."""
    for name, deps in import_graph().items():
        for dep in deps:
            if name.startswith("pxp.core") or name.startswith("pxp.experiment"):
                assert not dep.startswith("pxp.plugins"), f"{name} imports the plugin {dep}"
            if name.startswith("pxp.plugins."):
                own = ".".join(name.split(".")[:4])
                assert not dep.startswith("pxp.plugins.") or dep.startswith(own), f"{name} imports another plugin: {dep}"


TASK_WORDS = re.compile(r"\b(para|act|bowl|plate|libero|agentview|place|grasp|miss)\b", re.I)


def test_core_names_no_plugin_and_no_task():
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in sorted((REPO / "core").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if TASK_WORDS.search(line)]
    assert not hits, "task words in core/:\n" + "\n".join(hits)


def test_core_imports_no_torch_at_module_level():
    for path in sorted((REPO / "core").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only: functions may import torch
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("torch", "timm", "mujoco") for n in names), f"{path.name} imports {names}"
