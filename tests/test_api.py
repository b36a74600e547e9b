"""The public Python API (``import facefair as ff``): lazy (no torch at import), documented, its
doctests run, and each function gives what the command that it wraps gives."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import facefair as ff

def test_the_api_doctest_audits_a_table_and_checks_a_figure():
    """The package's own example trains nothing: it audits a small table and checks a figure."""
    finder = doctest.DocTestFinder()
    examples = [e.source for t in finder.find(importlib.import_module("facefair.api")) for e in t.examples]
    assert any("ff.audit(" in s for s in examples) and any("accuracy" in s for s in examples)
    assert not any("ff.train(" in s or "ff.load(" in s for s in examples)


def test_import_and_help_load_no_torch():
    code = ("import sys, pydoc, facefair as ff\n"
            "text = ''.join(pydoc.render_doc(f, renderer=pydoc.plaintext)\n"
            "               for f in (ff.audit, ff.load, ff.train, ff.compare, ff.Model.predict))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(text)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for phrase in ("audit(frame_or_csv", "Parameters", "n_boot", "Returns", "Audit", "load(run_or_model_dir",
                   "train(config_or_path", "compare(runs", "predict(self, source", "detect"):
        assert phrase in done.stdout, phrase
    help_text = subprocess.run([sys.executable, "-c", "import facefair as ff; help(ff.audit)"], capture_output=True,
                               text=True, env={"PAGER": "cat", "TERM": "dumb", **_env()})
    assert help_text.returncode == 0 and "Examples" in help_text.stdout


def _env() -> dict:
    import os
    return dict(os.environ)


def _table() -> pd.DataFrame:
    return pd.DataFrame({"race": ["White"] * 40 + ["Black"] * 40,
                         "gender_true": ["Male", "Female"] * 40,
                         "gender_pred": ["Male", "Female"] * 30 + ["Female", "Male"] * 10})


def test_audit_and_train_stay_functions_after_their_subpackages_are_imported():
    # facefair/audit/ and facefair/train/ are subpackages too: importing them must not replace the functions.
    first = ff.audit(_table(), n_boot=0)
    importlib.import_module("facefair.audit.core")
    importlib.import_module("facefair.train.methods")
    assert callable(ff.audit) and callable(ff.train) and ff.audit.__module__ == "facefair.api.fairness"
    assert ff.audit(_table(), n_boot=0).value("gender", "overall", "all", "accuracy") == first.value(
        "gender", "overall", "all", "accuracy") == 0.75
    from facefair.audit import AuditConfig  # the subpackage is still importable by name
    assert AuditConfig().n_boot == 1000
    with pytest.raises(AttributeError):
        ff.no_such_thing  # noqa: B018


def test_audit_matches_the_command_and_its_metric_frame(tiny_run, tmp_path):
    from facefair.audit import AuditConfig, audit_file

    result = ff.audit(tiny_run, n_boot=50, seed=3)
    reference = audit_file(tiny_run, AuditConfig(n_boot=50, seed=3))
    pd.testing.assert_frame_equal(result.by_group, reference.group_metrics)
    pd.testing.assert_frame_equal(result.gaps, reference.gaps)
    assert result.summary == reference.summary and result.tasks == [t.name for t in reference.tasks]
    frame = result.metric_frame("gender", "race")
    for group, accuracy in frame.by_group["accuracy"].items():
        assert accuracy == pytest.approx(result.value("gender", "race", group, "accuracy"))
    assert frame.by_group.index.name == "race"
    assert result.metric_frame("age", "gender").by_group["mae"].notna().all()
    assert result.metric_frame("race", "race:gender").by_group.index.name == "race:gender"
    page = result.to_html(tmp_path / "pages")
    assert page.name == "audit.html" and "<html" in page.read_text()[:500].lower()
    assert set(result.save(tmp_path / "out")) >= {"audit.json", "audit.html", "gaps.csv"}
    with pytest.raises(KeyError, match="no bogus_true"):
        result.metric_frame("bogus")
    with pytest.raises(TypeError, match="unknown audit setting"):
        ff.audit(tiny_run, n_boots=3)


def test_load_predict_matches_facefair_predict(tiny_run, utk_sample, tmp_path):
    from facefair.cli import main

    model = ff.load(tiny_run, device="cpu")
    assert model.tasks == ["gender", "race", "age_group", "age"] and "Female" in model.classes["gender"]
    frame = model.predict(utk_sample)
    assert main(["predict", str(tiny_run), str(utk_sample), "--out", str(tmp_path / "cli"), "--no-progress",
                 "--no-framing-check"]) == 0
    written = pd.read_csv(tmp_path / "cli" / "predictions.csv")
    columns = [c for c in frame if "_prob_" in c or c == "age_pred"]
    np.testing.assert_allclose(frame[columns].to_numpy(float), written[columns].to_numpy(float), atol=1e-5)
    two = model.predict([written["path"][0], written["path"][1]], tta=False)
    assert len(two) == 2 and two["gender_pred"].notna().all()
    with pytest.raises(TypeError, match="unknown inference setting"):
        model.predict(utk_sample, batchsize=3)


def test_train_returns_the_run_and_overrides_are_checked(utk_sample, tmp_path):
    from facefair.api.models import _run_config

    config = {"data": {"data": str(utk_sample), "workers": 1, "limit": 120, "cache_dir": str(tmp_path / "cache")},
              "model": {"backbone": "mobilenetv2", "image_size": 32}, "train": {"epochs": 1, "batch_size": 32}}
    checked = _run_config(config, {"epochs": 2, "train": {"seed": 5}, "backbone": "resnet18"})
    assert (checked.train.epochs, checked.train.seed, checked.model.backbone) == (2, 5, "resnet18")
    with pytest.raises(TypeError, match="unknown setting 'epoch'"):
        _run_config(config, {"epoch": 2})
    with pytest.raises(ValueError, match="epochs"):
        _run_config(config, {"train": {"epochs": "two"}})
    run = ff.train(config, out_dir=str(tmp_path / "run"), progress=False, tensorboard=False, tta=False)
    assert str(run.folder) == str(tmp_path / "run") and ff.load(run.folder, device="cpu").tasks


def test_compare_and_the_lists(tiny_run, tmp_path):
    comparison = ff.compare({"a": tiny_run, "b": [tiny_run]}, n_boot=20)
    assert comparison.reference == "a" and set(comparison.runs) == {"a", "b"}
    assert comparison.significant.empty  # the same predictions twice: nothing differs
    assert comparison.to_html(tmp_path / "c.html").is_file()
    assert "mobilenetv2" in ff.list_backbones() and ff.list_backbones("resnet*") == ["resnet18", "resnet34", "resnet50"]
    assert {"standard", "reweight", "group_dro"} <= set(ff.list_methods())
