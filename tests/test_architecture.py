"""The layout's rules, checked on the code: no import cycles, and the architecture page's graph is
the one the code draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_graph():  # scripts/ is not a package: load the script as a module
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert graph.cycles(graph.module_graph()) == []


def test_no_cycle_between_the_layout_units() -> None:
    graph = _import_graph()
    assert graph.cycles(graph.unit_graph(graph.module_graph())) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = _import_graph()
    assert graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_architecture_page_shows_the_current_graph() -> None:
    graph = _import_graph()
    drawn = graph.mermaid(graph.unit_graph(graph.module_graph()))
    page = (REPO / "docs" / "architecture.md").read_text()
    assert drawn in page, "run scripts/import_graph.py and paste its output into docs/architecture.md"
