"""The import contract: layers import downward only, with no cycles, under one namespace.

1. ``envs``, ``perception``: know nothing of the rest of Cairn (an adapter in ``envs`` may
   name its game's perception);
2. ``experience``: records, the store, knowledge rows, recording;
3. ``skills``, ``guardrails``: read records and percepts, write knowledge; neither imports
   the other, the runtime or the controllers;
4. ``runtime``: the loop, kits, planners, executor, CLI.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("envs", "perception", "experience", "skills", "guardrails", "runtime")
ALLOWED = {
    "perception": {"perception"},
    "envs": {"envs", "perception"},
    "experience": {"experience", "perception"},
    "skills": {"skills", "experience", "perception"},
    "guardrails": {"guardrails", "experience", "perception"},
    "runtime": set(PACKAGES),
}


def imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import in a file (with ``top_level_only``: those run at
    import time, outside functions and ``TYPE_CHECKING`` blocks)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "cairn"]
    return found


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_what_is_below_it(package):
    wrong = []
    for owner, path in sources():
        if owner != package:
            continue
        for line, module in imports(path):
            parts = module.split(".")
            if parts[0] in PACKAGES:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: bare '{module}' (use cairn.*)")
            elif parts[0] == "cairn" and len(parts) > 1 and parts[1] not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {module}")
    assert not wrong, "imports that go upward or sideways:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for package, path in sources():
        name = f"cairn.{package}.{path.stem}"
        graph[name] = {m for _, m in imports(path, top_level_only=True)
                       if m.startswith("cairn.") and m.count(".") >= 2}
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_contract_sees_an_upward_import(tmp_path):
    """The walker is not vacuous: an upward import in a file is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from cairn.runtime.loop import Agent\n")
    assert (2, "cairn.runtime.loop") in imports(bad)
    assert imports(bad, top_level_only=True) == []
