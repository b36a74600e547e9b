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
    ("audit", "facefair.train"), ("audit", "facefair.evaluate"),
    ("data", "facefair.train"), ("data", "facefair.evaluate"), ("data", "facefair.models"),
    # align/ is detection, landmarks and chips only: models run in facefair.inference.
    ("align", "facefair.evaluate"), ("align", "facefair.predict"), ("align", "facefair.serve"),
    ("align", "facefair.inference"), ("align", "facefair.models"), ("align", "facefair.train"),
    ("align", "facefair.robustness"),
    # The inference module sits under every command that predicts, never above one.
    ("inference", "facefair.predict"), ("inference", "facefair.serve"), ("inference", "facefair.robustness"),
    ("inference", "facefair.train"), ("inference", "facefair.mitigate"), ("inference", "facefair.audit"),
    ("inference", "facefair.evaluate.run"), ("inference", "facefair.evaluate.report"),
])
def test_lower_layers_do_not_import_higher_ones(package, forbidden):
    assert _offenders(package, forbidden) == []


def _definitions(name: str) -> list[str]:
    return sorted(f"{path.relative_to(SRC)}:{node.lineno}" for path in SRC.rglob("*.py")
                  for node in ast.walk(ast.parse(path.read_text(), str(path)))
                  if isinstance(node, ast.FunctionDef) and node.name == name)


@pytest.mark.parametrize("name, home", [
    ("make_detector", "align/detectors.py"),        # serve had its own
    ("resize_face", "data/images.py"),               # align/photos.resize_chip, serve/predictor.resize_face
    ("predict_tensor", "inference/engine.py"),
    ("predict_batches", "inference/engine.py"),
    ("list_images", "inference/sources.py"),         # was predict.py's: the API needs it below the commands
    ("shrink_photo", "align/pipeline.py"),           # predict shrank files, serve its uploads, differently
])
def test_one_definition_of_each_inference_step(name, home):
    assert [d.split(":")[0] for d in _definitions(name)] == [home]


@pytest.mark.parametrize("caller", ["predict.py", "serve/predictor.py", "serve/app.py", "evaluate/run.py",
                                    "evaluate/report.py", "robustness/runner.py"])
def test_every_command_that_predicts_goes_through_the_inference_module(caller):
    imported = _imports(SRC / caller)
    assert any(name.startswith("facefair.inference") for name in imported), imported
    # ... and none reaches past it to detect, chip or run the model its own way.
    assert not {"facefair.align.detectors.make_detector", "facefair.align.chips.align_faces"} & imported


def test_inference_settings_and_the_package_import_without_torch():
    code = ("import sys, facefair.inference, facefair.inference.settings, facefair.serve.config, "
            "facefair.robustness.config; assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("module", ["runtime.py", "registry.py", "flags.py", "pages.py"])
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


# -- one owner per contract ------------------------------------------------------------------------
RUN_FILE_NAMES = ("report.json", "splits.csv", "predictions.csv", "config.yaml", "config.json",
                  "model.safetensors", "last.pt", "best.pt", "MODEL_CARD.md", "audit.json", "audit.html",
                  "group_metrics.csv", "gaps.csv")


def _spelled_names(path: Path, names, root: Path = SRC) -> list[str]:
    """String constants that are one of ``names`` used as a path (the name alone or the end of a
    path): prose that mentions a file (help text, messages, docstrings) has spaces and is not counted."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value.strip()
            if value and not any(ch.isspace() for ch in value) and any(
                    value == name or value.endswith("/" + name) for name in names):
                found.append(f"{path.relative_to(root)}:{node.lineno} {value!r}")
    return found


def test_run_folder_file_names_are_spelled_in_one_module():
    spelled = [hit for path in sorted(SRC.rglob("*.py")) for hit in _spelled_names(path, RUN_FILE_NAMES)]
    assert {hit.split(":")[0] for hit in spelled} == {"run.py"}, spelled


def test_the_file_name_check_sees_paths_but_not_prose(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('p = run / "report.json"\nq = f"{run}/splits.csv"\nhelp = "writes RUN/report.json"\n')
    hits = sorted(hit.split(" ", 1)[1] for hit in _spelled_names(sample, RUN_FILE_NAMES, root=tmp_path))
    assert hits == ["'/splits.csv'", "'report.json'"]


def _calls(path: Path, name: str) -> int:
    return sum(1 for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == name
                                                  or getattr(node.func, "id", None) == name))


# Modules that call pandas' CSV reader, and the one table each reads: only facefair/table.py reads
# the predictions table (pyarrow's reader, else the dataset readers' read_csv_table).
READ_CSV_CALLERS = {
    "table.py": "the predictions table (the fast path)",
    "data/readers.py": "every CSV as text (label CSVs, and the predictions table for table.py)",
    "data/splits.py": "splits.csv and --split-groups",
    "data/exclusions.py": "--exclude / --relabel lists",
    "align/cli.py": "a label CSV's header",
    "evaluate/report.py": "benchmark_results.csv",
}


def test_the_predictions_table_is_read_in_one_place():
    callers = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if _calls(p, "read_csv")}
    assert callers == set(READ_CSV_CALLERS)
    table_readers = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if _calls(p, "read_csv_table")}
    # inference/sources.py reads a CSV of images to predict (input), data/readers.py label CSVs.
    assert table_readers == {"table.py", "inference/sources.py", "data/readers.py"}
    definers = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                if "def read_predictions(" in p.read_text() or "def load_predictions(" in p.read_text()]
    assert sorted(definers) == ["audit/groups.py", "table.py"]  # groups.load_predictions calls table's


def test_run_and_table_import_without_torch():
    code = ("import sys, facefair.run, facefair.table; facefair.run.Run('x').eval_dir('val');"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
