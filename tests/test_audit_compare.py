"""Paired comparisons: known effects are found, absent ones are not, unpaired runs are refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facefair.audit import AuditConfig, compare_runs
from facefair.audit.compare import parse_compare_items, write_comparison

CONFIG = AuditConfig(n_boot=400, tasks=("gender",), attributes=("race",), intersections=())


def _baseline(n: int = 2000, accuracy: float = 0.8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    race = rng.choice(["White", "Black", "Asian", "Indian"], n)
    truth = rng.choice(["Male", "Female"], n)
    wrong = rng.random(n) > accuracy
    pred = np.where(wrong, np.where(truth == "Male", "Female", "Male"), truth)
    return pd.DataFrame({"path": [f"face{i}.jpg" for i in range(n)], "race": race, "gender": truth,
                         "gender_true": truth, "gender_pred": pred})


def _changed(base: pd.DataFrame, fixed: int, broken: int, seed: int = 1) -> pd.DataFrame:
    """``base`` with ``fixed`` of its errors corrected and ``broken`` of its right answers flipped."""
    rng = np.random.default_rng(seed)
    out = base.copy()
    wrong = np.flatnonzero(base.gender_pred != base.gender_true)
    right = np.flatnonzero(base.gender_pred == base.gender_true)
    fix, brk = rng.choice(wrong, fixed, replace=False), rng.choice(right, broken, replace=False)
    out.loc[fix, "gender_pred"] = out.loc[fix, "gender_true"]
    out.loc[brk, "gender_pred"] = np.where(out.loc[brk, "gender_true"] == "Male", "Female", "Male")
    return out


def _accuracy_row(table: pd.DataFrame, method: str) -> pd.Series:
    return table[(table.method == method) & (table.metric == "accuracy")].iloc[0]


def test_a_four_point_effect_on_2000_paired_rows_is_significant(tmp_path):
    base = _baseline()
    better = _changed(base, fixed=130, broken=50)  # +80 rows = +4 points
    base.to_csv(tmp_path / "base.csv", index=False)
    better.sample(frac=1, random_state=3).to_csv(tmp_path / "better.csv", index=False)  # order must not matter
    table = compare_runs([tmp_path / "base.csv", tmp_path / "better.csv"], CONFIG)
    row = _accuracy_row(table, "better")
    assert row.difference == pytest.approx(0.04, abs=1e-12)
    assert row.test == "exact McNemar" and row.discordant == "50 only base, 130 only better"
    assert row.ci_low > 0 and row.p_value < 1e-6 and row.significant and row.direction == "better"
    assert "better vs base: gender classification accuracy +4.0 points" in row.verdict
    assert row.verdict.endswith("significant, better")


def test_no_effect_is_not_significant(tmp_path):
    base = _baseline()
    same = _changed(base, fixed=60, broken=60)  # different errors, same accuracy
    base.to_csv(tmp_path / "base.csv", index=False)
    same.to_csv(tmp_path / "same.csv", index=False)
    table = compare_runs([tmp_path / "base.csv", tmp_path / "same.csv"], CONFIG)
    row = _accuracy_row(table, "same")
    assert row.difference == 0 and row.p_value == pytest.approx(1.0) and not row.significant
    assert row.ci_low < 0 < row.ci_high and row.verdict.endswith("not significant")
    assert not table.significant.any()


def test_seeds_are_averaged_and_their_spread_shown(tmp_path):
    base = _baseline()
    paths = {}
    for name, runs in (("base", [(10, 10), (12, 8)]), ("new", [(110, 30), (100, 30), (120, 30)])):
        for i, (fixed, broken) in enumerate(runs):
            path = tmp_path / name / f"s{i}" / "predictions.csv"
            path.parent.mkdir(parents=True)
            _changed(base, fixed, broken, seed=i + 5).to_csv(path, index=False)
        paths[name] = str(tmp_path / name / "s*")
    entries = parse_compare_items([f"base={paths['base']}", f"new={paths['new']}"])
    assert [len(v) for v in entries.values()] == [2, 3]
    table = compare_runs(entries, CONFIG)
    row = _accuracy_row(table, "new")
    assert row.n_runs == 3 and row.test == "paired bootstrap"
    # Seed means: base (0 + 4) / 2 = +2 rows, new (80 + 70 + 90) / 3 = +80 rows over the 2000.
    assert row.value - _accuracy_row(table, "base").value == pytest.approx((80 - 2) / 2000, abs=1e-12)
    assert row.seed_std == pytest.approx(np.std([80, 70, 90], ddof=1) / 2000, rel=1e-9)
    assert row.seed_min < row.value < row.seed_max and row.significant and not row.within_seed_noise


def test_runs_on_different_rows_are_refused(tmp_path):
    base = _baseline(200)
    base.to_csv(tmp_path / "a.csv", index=False)
    base.iloc[:150].to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match="not evaluated on the same test rows"):
        compare_runs([tmp_path / "a.csv", tmp_path / "b.csv"], CONFIG)
    other = base.copy()
    other.loc[0, "gender_true"] = "Female" if base.loc[0, "gender_true"] == "Male" else "Male"
    other.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match="gender_true differs"):
        compare_runs([tmp_path / "a.csv", tmp_path / "c.csv"], CONFIG)


def test_the_same_faces_in_another_folder_are_paired_by_their_place_in_it(tmp_path):
    # a run trained on another machine (a GPU one, say) reads the same dataset from another folder
    base = _baseline(400)
    here, there = base.copy(), _changed(base, fixed=20, broken=0)
    here["path"] = [f"/data/utk/UTKFace/{p}" for p in base.path]
    there["path"] = [f"/tmp/job-7/pack/UTKFace/{p}" for p in base.path]
    here.to_csv(tmp_path / "cpu.csv", index=False)
    there.sample(frac=1, random_state=2).to_csv(tmp_path / "gpu.csv", index=False)
    table = compare_runs([tmp_path / "cpu.csv", tmp_path / "gpu.csv"], CONFIG)
    assert _accuracy_row(table, "gpu").difference == pytest.approx(20 / 400, abs=1e-12)
    assert any("/tmp/job-7/pack/UTKFace" in note and "/data/utk/UTKFace" in note for note in table.attrs["notes"])
    # different faces under the same names in both folders are still refused: their labels differ
    other = _baseline(400, seed=5)
    other["path"] = there["path"]
    other.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match="differs"):
        compare_runs([tmp_path / "cpu.csv", tmp_path / "other.csv"], CONFIG)
    # a subset in another folder is not the same rows
    there.iloc[:300].to_csv(tmp_path / "part.csv", index=False)
    with pytest.raises(ValueError, match="not evaluated on the same test rows"):
        compare_runs([tmp_path / "cpu.csv", tmp_path / "part.csv"], CONFIG)


def test_pareto_uses_the_paired_result(tmp_path):
    base = _baseline()
    tiny = _changed(base, fixed=3, broken=0)  # better by a hair: not significantly
    big = _changed(base, fixed=200, broken=0)
    for name, frame in (("base", base), ("tiny", tiny), ("big", big)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    table = compare_runs({"base": tmp_path / "base.csv", "tiny": tmp_path / "tiny.csv", "big": tmp_path / "big.csv"},
                         CONFIG, reference="tiny")
    pareto = table[table.attribute == "race"].drop_duplicates("method").set_index("method").pareto
    assert pareto["big"].startswith("Pareto-optimal")
    assert pareto["base"].startswith("dominated by") and "big" in pareto["base"]
    assert table.reference.eq("tiny").all()


def test_pareto_domination_survives_holm_over_every_pairwise_test(tmp_path):
    """A method better by 8 fixed errors in 2,000 rows: its paired 95% interval excludes 0 (p about
    0.005), but not after Holm over the 30 pairwise axis tests of six methods (15 pairs, 2 axes). 'dominated by' is a
    claim of significance, so it must not rest on an uncorrected interval."""
    base = _baseline()
    slight = _changed(base, fixed=8, broken=0)
    runs = {"base": base, "slight": slight, **{f"copy{i}": base for i in range(4)}}
    for name, frame in runs.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    table = compare_runs({name: tmp_path / f"{name}.csv" for name in runs}, CONFIG, reference="base")
    accuracy = _accuracy_row(table, "slight")
    assert accuracy.ci_low > 0                      # uncorrected, slight is better ...
    pareto = table[table.attribute == "race"].drop_duplicates("method").set_index("method").pareto
    assert pareto.str.startswith("Pareto-optimal").all(), pareto.to_dict()   # ... but no one is dominated


def test_cli_compare_writes_csv_json_html(tmp_path, capsys):
    import argparse

    from facefair.audit.cli import register
    base = _baseline(600)
    base.to_csv(tmp_path / "a.csv", index=False)
    _changed(base, 40, 0).to_csv(tmp_path / "b.csv", index=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", "--compare", str(tmp_path / "a.csv"), f"fixed={tmp_path / 'b.csv'}",
                              "--out", str(tmp_path / "cmp"), "--n-boot", "100", "--tasks", "gender",
                              "--attributes", "race", "--intersections"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["reference"] == "a" and printed["runs"] == {"a": 1, "fixed": 1}
    assert any(v.startswith("fixed vs a: gender classification accuracy +6.7 points") for v in printed["significant"])
    csv = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert {"difference", "ci_low", "ci_high", "p_value", "p_holm", "verdict", "pareto"} <= set(csv.columns)
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["reference"] == "a" and len(data["rows"]) == len(csv)
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "Paired comparison against a" in html and "exact McNemar" in html and "significant, better" in html
    # The Pareto rule is stated as it is applied: Holm over the pairwise axis tests, not an uncorrected interval.
    assert "Holm-adjusted p &lt; 0.05\nover every pairwise test of the Pareto axes" in html


def test_write_comparison_round_trips(tmp_path):
    base = _baseline(300)
    base.to_csv(tmp_path / "a.csv", index=False)
    table = compare_runs([tmp_path / "a.csv", tmp_path / "a.csv"], CONFIG, names=["x", "y"])
    assert set(table.method) == {"x", "y"} and (table[table.method == "y"].difference == 0).all()
    assert set(write_comparison(table, tmp_path / "out")) == {"compare.csv", "compare.json", "compare.html"}


def test_exact_age_mae_difference_is_paired_too(tmp_path):
    rng = np.random.default_rng(4)
    base = _baseline(800)
    base["age_true"] = rng.integers(1, 90, len(base)).astype(float)
    base["age_pred"] = base.age_true + rng.normal(0, 8, len(base))
    closer = base.copy()
    closer["age_pred"] = base.age_true + (base.age_pred - base.age_true) * 0.5  # every error halved
    base.to_csv(tmp_path / "a.csv", index=False)
    closer.to_csv(tmp_path / "b.csv", index=False)
    config = AuditConfig(n_boot=300, tasks=("age",), attributes=("race",), intersections=())
    table = compare_runs([tmp_path / "a.csv", tmp_path / "b.csv"], config)
    row = table[(table.method == "b") & (table.metric == "mae")].iloc[0]
    assert row.difference == pytest.approx(-0.5 * np.abs(base.age_pred - base.age_true).mean(), rel=1e-9)
    assert row.significant and row.direction == "better" and "years" in row.verdict
