"""Outputs of an audit (JSON, tidy CSVs, self-contained HTML), ``--compare`` and the command line."""

from __future__ import annotations

import argparse
import json
import re

import pandas as pd
import pytest

from facefair.audit import AuditConfig, audit_predictions, compare_runs, write_audit
from facefair.audit.cli import register

from test_audit_bootstrap import synthetic


def _strict_json(text: str):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=reject)


def _self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"](https?:|//|file:)""", html)
    for src in re.findall(r"""<img[^>]*src=['"]([^'"]+)""", html):
        assert src.startswith("data:image/png;base64,")


@pytest.fixture(scope="module")
def small_result():
    frame = synthetic(240, seed=2)
    frame.loc[frame.index[:5], "race"] = "Middle Eastern"  # a group far too small to judge
    config = AuditConfig(attributes=("race", "gender"), intersections=(("race", "gender"),), n_boot=30,
                         min_group_size=20)
    return audit_predictions(frame, config, source="synthetic.csv")


@pytest.fixture(scope="module")
def written(small_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return out, write_audit(small_result, out)


def test_write_audit_outputs(written):
    tmp_path, paths = written
    assert {p.name for p in paths.values()} == {"audit.json", "group_metrics.csv", "gaps.csv", "calibration.csv",
                                                "confusion_matrices.csv", "audit.html"}
    data = _strict_json((tmp_path / "audit.json").read_text())
    assert data["config"]["n_boot"] == 30 and data["config"]["intersections"] == ["race:gender"]
    assert "equalized_odds_difference" in data["definitions"]
    assert data["overall"]["gender"]["accuracy"]["n"] == 240
    assert data["confusion_matrices"]["race"]["race"]["Black"]
    groups = pd.read_csv(tmp_path / "group_metrics.csv")
    assert list(groups.columns[:9]) == ["task", "attribute", "group", "metric", "value", "ci_low", "ci_high", "n",
                                        "flagged"]
    flagged = groups[groups.group == "Middle Eastern"]
    assert len(flagged) and flagged.flagged.all()
    gaps = pd.read_csv(tmp_path / "gaps.csv", keep_default_na=False)
    assert "Middle Eastern" in set(gaps.excluded_groups)
    calibration = pd.read_csv(tmp_path / "calibration.csv")
    assert set(calibration.task) == {"gender", "race"} and calibration.n.sum() > 0


def test_html_is_self_contained_and_says_what_it_skipped(small_result, written):
    tmp_path, _ = written
    html = (tmp_path / "audit.html").read_text()
    _self_contained(html)
    assert html.count("data:image/png;base64,") >= 8
    assert "too small to judge" in html
    assert small_result.summary.split(":")[0] in html
    assert "Equalized-odds and demographic-parity differences are not computed" in html


def test_report_without_probabilities(tmp_path):
    frame = synthetic(120)
    frame = frame.drop(columns=[c for c in frame.columns if "_prob_" in c or c.startswith("race_")])
    result = audit_predictions(frame, AuditConfig(attributes=("race",), intersections=(), n_boot=0))
    write_audit(result, tmp_path)
    html = (tmp_path / "audit.html").read_text()
    _self_contained(html)
    assert "no probabilities in the table" in html
    assert pd.read_csv(tmp_path / "calibration.csv").empty


def _parser():
    parser = argparse.ArgumentParser(prog="facefair")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_audit_of_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    synthetic(150).to_csv(run / "predictions.csv", index=False)
    args = _parser().parse_args(["audit", str(run), "--n-boot", "20", "--seed", "3", "--min-group-size", "10",
                                 "--attributes", "race", "--intersections", "--tasks", "gender"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(run / "audit")
    gm = pd.read_csv(run / "audit" / "group_metrics.csv")
    assert set(gm.task) == {"gender"} and set(gm.attribute) == {"overall", "race"}
    assert _strict_json((run / "audit" / "audit.json").read_text())["config"]["seed"] == 3


def test_cli_compare_two_runs(tmp_path, capsys):
    a, b = tmp_path / "baseline.csv", tmp_path / "reweighted.csv"
    synthetic(150, seed=1).to_csv(a, index=False)
    better = synthetic(150, seed=1)
    better["gender_pred"] = better["gender_true"]  # a perfect gender model
    better.to_csv(b, index=False)
    args = _parser().parse_args(["audit", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp"),
                                 "--n-boot", "10", "--attributes", "race", "--intersections", "--min-group-size", "5"])
    assert args.func(args) == 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert set(table.method) == {"baseline", "reweighted"} and set(table.reference) == {"baseline"}
    gender = table[(table.task == "gender") & (table.method == "reweighted")].set_index(["attribute", "metric"])
    assert gender.loc[("overall", "accuracy"), "value"] == 1.0
    assert gender.loc[("race", "accuracy_difference"), "value"] == 0
    assert gender.loc[("race", "accuracy_difference"), "difference"] < 0
    html = (tmp_path / "cmp" / "compare.html").read_text()
    _self_contained(html)
    assert "reweighted" in html


def test_compare_runs_names_runs_after_their_folders(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        synthetic(60).to_csv(tmp_path / name / "predictions.csv", index=False)
    table = compare_runs([tmp_path / "one", tmp_path / "two" / "predictions.csv"],
                         AuditConfig(attributes=("gender",), intersections=(), n_boot=0, tasks=("race",)))
    assert list(dict.fromkeys(table.method)) == ["one", "two"]
    assert table.ci_low.isna().all()  # no resamples, no intervals


def test_cli_needs_a_table_or_compare():
    args = _parser().parse_args(["audit"])
    with pytest.raises(ValueError, match="predictions CSV"):
        args.func(args)
    with pytest.raises(FileNotFoundError):
        bad = _parser().parse_args(["audit", "/nonexistent/run"])
        bad.func(bad)
