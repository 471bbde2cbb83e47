"""Draw the import graph of l2l's packages from the code, and find import cycles.

    .venv/bin/python scripts/import_graph.py            # the Mermaid graph docs/architecture.md shows
    .venv/bin/python scripts/import_graph.py --cycles   # module-level cycles, one a line (none: exit 0)

Every import counts, also one inside a function: a lazy import still ties two modules together.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("l2l", "api", "controller", "search_spaces")
#: The units the architecture page draws: a package of l2l by role, or a top-level package.
UNITS = (
    "l2l.service", "l2l.store", "l2l.worker", "l2l.client", "l2l.placement", "l2l.bench",
    "l2l.integrations", "l2l.loop", "l2l.settings", "l2l.rewards", "l2l.pareto",
    "api", "controller", "search_spaces",
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in TOP_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                modules[module_name(path)] = path
    return modules


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules that ``name`` (at ``path``) imports, resolved to known module names."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
                break
    return found


def module_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in sorted(modules.items())}


def unit_of(module: str) -> str:
    for unit in UNITS:
        if module == unit or module.startswith(unit + "."):
            return unit
    return module


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = units.setdefault(unit_of(module), set())
        edges.update(unit_of(t) for t in targets if unit_of(t) != unit_of(module))
    return units


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return sorted(found)


def mermaid(units: dict[str, set[str]]) -> str:
    lines = ["```mermaid", "graph LR"]
    for unit in sorted(units):
        for target in sorted(units[unit]):
            lines.append(f"    {unit.replace('.', '_')}[{unit}] --> {target.replace('.', '_')}[{target}]")
    lines.append("```")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", action="store_true", help="list module-level import cycles")
    args = parser.parse_args()
    graph = module_graph()
    if args.cycles:
        found = cycles(graph)
        for component in found:
            print(" <-> ".join(component))
        return 1 if found else 0
    print(mermaid(unit_graph(graph)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
