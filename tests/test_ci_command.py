""".ci/run runs exactly the README's test command (lint, then the suite), so what CI checks is what
a developer is told to run."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _command(line: str) -> str:
    return line.split("#", 1)[0].strip()


def test_ci_runs_the_readme_test_command():
    readme = [_command(line) for line in (REPO / "README.md").read_text().splitlines()]
    tests = [line for line in readme if "pytest" in line and line.startswith(".venv/")]
    assert len(tests) == 1, tests
    ci = [_command(line) for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci[-1] == tests[0]
    assert tests[0].startswith(".venv/bin/ruff check ")
