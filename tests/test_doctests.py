"""Every example in the package's docstrings runs: one test per module that has any, found by
walking the package, so a new module's examples are checked without anyone listing it here."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import facefair

PACKAGE = Path(facefair.__file__).parent


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_walk_finds_the_modules_with_examples():
    assert {"facefair.api", "facefair.table", "facefair.pages", "facefair.train.mixstyle"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
