"""benchmarks/results keeps summaries only (benchmarks/README.md): no per-row or per-run file is
tracked, so the tree stays small enough to travel beside the whole dataset to a GPU machine."""

import gzip
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
#: the README's cap on one tracked results file
MAX_BYTES = 100 * 1024


def _tracked() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z", RESULTS], cwd=REPO, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing is tracked to check")
    return [REPO / name for name in listed.stdout.decode().split("\0") if name]


def test_no_tracked_results_file_is_large_or_ignored():
    files = _tracked()
    assert files, "git lists no results files"
    large = [f"{p.relative_to(REPO)} ({p.stat().st_size // 1024} KiB)" for p in files
             if p.is_file() and p.stat().st_size > MAX_BYTES]
    assert large == []
    # a file the results .gitignore names (run folders, per-run tables, HTML twins) was added by force
    ignored = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard", RESULTS], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    assert ignored == []


def test_no_tracked_results_table_is_per_row():
    per_row = []
    for path in _tracked():
        if path.name.endswith(".csv") or path.name.endswith(".csv.gz"):
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt") as table:
                if "path" in table.readline().strip().split(","):
                    per_row.append(str(path.relative_to(REPO)))
    assert per_row == []
