"""The arrows run one way: core -> program -> policies | operations -> commands.

Every import in infra/, policies/, __main__.py, workloads/__main__.py and global/__main__.py is read from the source (function-level and
type-checking imports included), so a lazy import cannot hide a cycle or an arrow pointing back
up. A second check imports the hydrator image's entry point in a fresh interpreter and lists what
it really loads.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLOUD_SDKS = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_policy", "boto3", "botocore")

# Layer of each part of the tree; a module may import only from its own layer or below, and
# operations and policies (one layer) do not import each other.
LAYERS = (
    ("infra.core", 0),
    ("infra.program", 1),
    ("__main__", 1),  # the root Pulumi program (the base project)
    ("workloads.__main__", 1),  # the workloads project's program
    ("global.__main__", 1),  # the global project's program (an environment's Route 53 records)
    ("policies", 2),
    ("infra.ops", 2),
    ("infra.cli", 3),
    ("infra.__main__", 3),
)
SIBLINGS_APART = ("policies", "infra.ops")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [ROOT / "__main__.py", ROOT / "workloads" / "__main__.py", ROOT / "global" / "__main__.py",
             *sorted((ROOT / "infra").rglob("*.py")),
             *sorted((ROOT / "policies").rglob("*.py"))]
    return {_module_name(p): p for p in files}


SOURCES = _sources()


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(name, path.name == "__init__.py", node)
            # `from pkg import submodule` is an arrow to the submodule (Python runs pkg/__init__
            # for any submodule; that is not an arrow of ours).
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in SOURCES]
            out += [(s, node.lineno) for s in subs]
            if len(subs) < len(node.names):
                out.append((mod, node.lineno))
    return out


def _project_module(imported: str) -> str | None:
    """The project module an import name refers to (the longest known prefix)."""
    parts = imported.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in SOURCES:
            return candidate
    return None


def _edges() -> dict[str, set[tuple[str, int]]]:
    graph: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for name, path in SOURCES.items():
        for imported, line in imports_of(name, path):
            target = _project_module(imported)
            if target and target != name:
                graph[name].add((target, line))
    return graph


EDGES = _edges()


def layer_of(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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


def test_every_module_has_a_layer():
    missing = [m for m in SOURCES if m not in ("infra",) and layer_of(m) is None]
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


def test_no_arrow_points_back_up():
    bad = []
    for src, targets in EDGES.items():
        ls = layer_of(src)
        for dst, line in targets:
            ld = layer_of(dst)
            if ls is None or ld is None:
                continue
            if ld[1] > ls[1]:
                bad.append(f"{SOURCES[src].relative_to(ROOT)}:{line} imports {dst} (layer {ld[1]} > {ls[1]})")
            elif ls[0] != ld[0] and {ls[0], ld[0]} == set(SIBLINGS_APART):
                bad.append(f"{SOURCES[src].relative_to(ROOT)}:{line} imports {dst} ({ls[0]} and {ld[0]} stay apart)")
    assert not bad, "arrows back up:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_modules():
    graph = {src: {dst for dst, _ in targets} for src, targets in EDGES.items()}
    assert _cycles(graph) == []


def test_no_import_cycle_between_packages():
    # An edge a.b.x -> a.c.y is an edge b -> c among the children of `a`; a cycle there is a
    # cycle between packages even when no two modules import each other.
    by_parent: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for src, targets in EDGES.items():
        for dst, _ in targets:
            a, b = src.split("."), dst.split(".")
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            if k < len(a) and k < len(b):
                by_parent[".".join(a[:k])][a[k]].add(b[k])
    # The top level is the layer test's: policies sit between infra's program and commands.
    found = {parent: cycles for parent, graph in by_parent.items() if parent and (cycles := _cycles(graph))}
    assert found == {}


def test_the_core_imports_no_cloud_sdk_anywhere():
    bad = []
    for name, path in SOURCES.items():
        if layer_of(name) != ("infra.core", 0):
            continue
        for imported, line in imports_of(name, path):
            if imported.split(".")[0] in CLOUD_SDKS:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not bad, "\n".join(bad)


def test_the_hydrator_entry_point_loads_neither_pulumi_nor_yaml():
    # The hydrator image ships boto3 and pydantic only (infra/ops/weights/requirements-hydrator.txt).
    code = ("import sys, infra.cli.weights, infra.ops.weights.hydrate, infra.ops.weights.upload\n"
            "print(','.join(m for m in ('pulumi', 'yaml', 'infra.program', 'policies') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_building_the_cli_loads_no_cloud_sdk():
    # Every command registers at start-up; `python -m infra size` must not pay for pulumi.
    code = ("import sys, infra.cli\ninfra.cli.build_parser()\n"
            f"print(','.join(m for m in {CLOUD_SDKS!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("src, dst", [("infra.core.sizing.search", "infra.program.compose"),
                                      ("infra.ops.weights.hydrate", "policies.offline")])
def test_the_layer_rules_would_catch_a_wrong_arrow(src, dst):
    ls, ld = layer_of(src), layer_of(dst)
    assert ld[1] > ls[1] or {ls[0], ld[0]} == set(SIBLINGS_APART)
