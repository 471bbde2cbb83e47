"""Architectural rules that keep processes light: checked in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("ray", "tensorflow", "keras", "keras_tuner", "jax", "torch", "numba", "pymetis")


@pytest.mark.parametrize(
    "module",
    [
        "api.main",
        "controller",
        "search_spaces",
        "l2l.service.jobs",
        "l2l.client.cli",
        "l2l.store",
        "l2l.service.placement_jobs",
    ],
)
def test_light_modules_import_no_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"from api.main import create_app\n"
        f"create_app()\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        f"assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_strategies_import_no_ray_or_sqlalchemy() -> None:
    code = (
        "import sys\n"
        "from controller import create_strategy\n"
        "from search_spaces import get_space\n"
        "for name in ('random', 'evolution', 'reinforce'):\n"
        "    s = create_strategy(name, get_space('mlp'), seed=0)\n"
        "    s.ask()\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'sqlalchemy', 'keras_tuner'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_strategy_sources_never_import_keras_ray_or_sqlalchemy() -> None:
    # TensorFlow pulls the keras package in by itself, so this is checked in the source.
    for path in (REPO / "controller").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"keras", "ray", "sqlalchemy", "keras_tuner"}, (
                    f"{path.name} imports {name}"
                )
                assert not name.startswith("tensorflow.keras"), f"{path.name} imports {name}"
