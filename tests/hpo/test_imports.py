"""Import structure: no cycle between the modules of hpo/ and backbones/; hpo's wings import only
down the flow; parsing needs no torch.

The graph holds every `import` the code can execute: module-level ones and those inside
functions (a function-level import only defers a cycle to the first call). Imports under
`if TYPE_CHECKING:` never run and are left out. Importing `a.b.c` runs `a/__init__` and
`a/b/__init__` first, so such an import also depends on those packages (unless the importer
lives inside them).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hpo", "backbones")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node outside `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (directly, or as the packages those run)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            targets.add(base_name)
            # `from pkg import sub` imports the submodule pkg.sub
            targets.update(f"{base_name}.{a.name}" for a in node.names
                           if f"{base_name}.{a.name}" in modules)
        own = set(_ancestors(name)) | {name}
        for target in targets:
            for dep in [*_ancestors(target), target]:
                if dep in modules and dep not in own:
                    graph[name].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_graph_sees_the_known_edges():
    """The walker itself: relative, absolute, function-level and package-parent edges."""
    graph = import_graph()
    assert "hpo.algorithms" in graph["hpo.space._study"]  # `from ..algorithms import ...`
    assert "backbones" in graph["hpo.algorithms"]  # absolute
    assert "hpo.space" in graph["hpo.cli._catalog"]  # only inside command functions
    assert "hpo.space" not in graph["hpo.algorithms"]  # TYPE_CHECKING only
    assert "hpo.space._types" in graph["hpo.space"]  # a package's own __init__
    assert "hpo.space" not in graph["hpo.space._types"]  # a child does not depend on its parent


def test_find_cycles_reports_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def _direction_faults(graph: dict[str, set[str]]) -> list[str]:
    """Edges against the package direction: backbones -> hpo, or hpo -> a backbones submodule."""
    faults = []
    for module, deps in sorted(graph.items()):
        top = module.partition(".")[0]
        for dep in sorted(deps):
            if top == "backbones" and dep.partition(".")[0] == "hpo":
                faults.append(f"{module} imports {dep}: backbones is a leaf and knows nothing of hpo")
            elif top == "hpo" and dep.startswith("backbones."):
                faults.append(f"{module} imports {dep}: hpo uses only `from backbones import ...`")
    return faults


def test_direction_faults_are_found():
    """The rule itself, on a made-up graph: both directions caught, the public package allowed."""
    graph = {"backbones.base": {"hpo.errors"}, "hpo.train.losses": {"backbones", "backbones.registry"},
             "hpo.train.heads": {"backbones"}}
    assert _direction_faults(graph) == [
        "backbones.base imports hpo.errors: backbones is a leaf and knows nothing of hpo",
        "hpo.train.losses imports backbones.registry: hpo uses only `from backbones import ...`"]


def test_backbones_is_a_leaf_and_hpo_uses_only_its_public_names():
    """backbones imports nothing of hpo; hpo imports `backbones` itself, never a submodule."""
    faults = _direction_faults(import_graph())
    assert not faults, "\n".join(faults)


#: The wings of hpo/, top floor first, as the data flows: a module imports from its own wing
#: or from a lower floor, never from a higher one or from another wing of its floor. The flat
#: modules of hpo/ are the core, under every wing; backbones is under the core.
FLOORS = (("cli",), ("run", "report"), ("outputs",), ("space",), ("trial",), ("train",),
          ("study", "data"))
#: Known imports against the flow: (importer, imported) -> why it is still there.
AGAINST_THE_FLOW: dict[tuple[str, str], str] = {}


def _wing(module: str) -> str:
    """The wing a module lives in: hpo.<wing>..., "core" for hpo's flat modules."""
    parts = module.split(".")
    if parts[0] != "hpo":
        return parts[0]
    if len(parts) > 1 and (ROOT / "hpo" / parts[1]).is_dir():
        return parts[1]
    return "core"


def _floor(wing: str) -> int:
    floors = {w: i for i, row in enumerate(FLOORS) for w in row}
    return floors.get(wing, len(FLOORS) + (wing != "core"))


def _flow_faults(graph: dict[str, set[str]], allowed=AGAINST_THE_FLOW) -> list[str]:
    """Imports up a floor or sideways between two wings of one floor (the hpo package's own
    face, hpo/__init__, is above every floor)."""
    faults = []
    for module, deps in sorted(graph.items()):
        if module == "hpo":
            continue
        known = {t for m, t in allowed if m == module}
        for dep in sorted(deps):
            if any(t == dep or t.startswith(dep + ".") for t in known):
                continue  # a known import, or the package it runs first
            a, b = _wing(module), _wing(dep)
            if a != b and _floor(b) <= _floor(a):
                way = "up" if _floor(b) < _floor(a) else "sideways"
                faults.append(f"{module} imports {dep}: {way}, from {a} to {b}")
    return faults


def test_flow_faults_are_found():
    """The rule itself, on a made-up graph: up and sideways caught, down and within a wing not."""
    graph = {"hpo.trial.objective": {"hpo.train", "hpo.trial.checkpoint", "hpo.errors"},
             "hpo.train._build": {"hpo.trial.objective"}, "hpo.study._loop": {"hpo.data"},
             "hpo.errors": {"hpo.cli"}, "hpo.cli": {"hpo.run.api", "backbones"}}
    assert _flow_faults(graph, allowed={}) == [
        "hpo.errors imports hpo.cli: up, from core to cli",
        "hpo.study._loop imports hpo.data: sideways, from study to data",
        "hpo.train._build imports hpo.trial.objective: up, from train to trial"]


def test_every_wing_of_hpo_is_on_a_floor():
    wings = {p.name for p in (ROOT / "hpo").iterdir() if (p / "__init__.py").is_file()}
    assert wings == {w for row in FLOORS for w in row}


def test_wings_import_only_down_the_flow():
    faults = _flow_faults(import_graph())
    assert not faults, "\n".join(faults)
    gone = [edge for edge in AGAINST_THE_FLOW if edge[1] not in import_graph()[edge[0]]]
    assert not gone, f"no longer imported, strike from AGAINST_THE_FLOW: {gone}"


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


# Every shipped space is parsed, loaded by bare name and by path, in a fresh interpreter.
_NO_TORCH = """
import json, sys
from pathlib import Path
import hpo
from hpo.space import load_search_space, parse_search_space
spaces = sorted(p for p in Path(sys.argv[1]).glob("*.yaml") if p.name != "portfolio.yaml")
for path in spaces:
    parse_search_space(path.read_text(encoding="utf-8"), source=str(path))
    load_search_space(path)
    load_search_space(path.name)
print(json.dumps({"spaces": [p.name for p in spaces],
                  "heavy": sorted(m for m in ("torch", "torchvision", "timm")
                                  if m in sys.modules)}))
"""


@pytest.mark.slow
def test_parsing_and_validating_a_space_imports_no_torch(tmp_path):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, str(ROOT / "search_spaces")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["spaces"] == ["hyperparameters.yaml", "vcr_full.yaml"]
    assert result["heavy"] == []
