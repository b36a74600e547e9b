"""The package's layers: lower layers never import higher ones, and every module imports on its own,
in any order (no import circle that only works when the modules load in one particular order)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "facefair"


def _imports(path: Path) -> set[str]:
    """Every facefair module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("facefair")}


def _offenders(package: str, forbidden: str) -> list[str]:
    return sorted(f"{path.relative_to(SRC)} imports {name}"
                  for path in (SRC / package).rglob("*.py") for name in _imports(path)
                  if name == forbidden or name.startswith(forbidden + "."))


@pytest.mark.parametrize("package, forbidden", [
    ("models", "facefair.mitigate"), ("models", "facefair.train"), ("models", "facefair.evaluate"),
    ("evaluate", "facefair.train"), ("evaluate", "facefair.mitigate"),
    ("audit", "facefair.train"), ("audit", "facefair.evaluate.run"),
    ("data", "facefair.train"), ("data", "facefair.evaluate"), ("data", "facefair.models"),
])
def test_lower_layers_do_not_import_higher_ones(package, forbidden):
    assert _offenders(package, forbidden) == []


@pytest.mark.parametrize("module", ["runtime.py", "registry.py", "flags.py"])
def test_bottom_modules_import_nothing_from_the_package(module):
    assert _imports(SRC / module) == set()


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from facefair.mitigate import fineface\n")
    assert "facefair.mitigate" in _imports(sample)


# Each order is a fresh interpreter (seconds each on 2 cores), so a few that cover the old knots:
# a method module before the package and the model module, the reverse, evaluate before train.
ORDERS = [
    ["facefair.mitigate.fineface", "facefair.mitigate", "facefair.models.multitask"],
    ["facefair.models.multitask", "facefair.mitigate.adversarial", "facefair.mitigate.reweight"],
    ["facefair.evaluate.run", "facefair.train.loop", "facefair.mitigate.thresholds"],
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: ">".join(m.split(".", 1)[1] for m in o))
def test_modules_import_in_any_order(order):
    # A fresh interpreter each time: an import circle shows up only when nothing is loaded yet.
    # Afterwards the registries must name FineFACE whether or not its module was imported.
    code = ";".join(f"import {m}" for m in order) + (
        ";from facefair.models.registry import ARCHITECTURES;"
        "from facefair.train.methods import METHODS;"
        "assert ARCHITECTURES.get('fineface').__module__ == 'facefair.mitigate.fineface';"
        "assert ARCHITECTURES.get('adversarial').__module__ == 'facefair.mitigate.adversarial';"
        "assert METHODS.get('reweight').__module__ == 'facefair.mitigate.reweight'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
