"""One definition per metric: ``facefair evaluate`` (report.json, gender_fpr_fnr_by_race.csv) and
``facefair audit`` give identical numbers on the same predictions CSV."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from facefair.audit import AuditConfig, audit_predictions, load_predictions
from facefair.evaluate.metrics import all_task_metrics, gender_rates_by_race


def _predictions(tmp_path) -> pd.DataFrame:
    """A predictions.csv as evaluate writes it, with the cases where definitions used to differ:
    a race class never true in the test rows (macro-F1 over which classes?), probabilities that do
    not sum to one (renormalised or raw AUC?), and a race with no woman (undefined FNR: 0 or NaN?)."""
    rng = np.random.default_rng(0)
    n = 400
    races = ("White", "Black", "Asian", "Indian", "Others")
    race_true = rng.choice(races[:4], n)  # no "Others" in the truth
    race_pred = np.where(rng.random(n) < 0.7, race_true, rng.choice(races, n))
    race_p = rng.dirichlet(np.ones(5), n)
    # The predicted class is the most probable one, as in any table a model writes (the audit withholds
    # probabilities that contradict T_pred); rows sum to 0.99, inside the audit's tolerance, so a
    # renormalised AUC would differ from the raw one.
    rows, top, chosen = np.arange(n), race_p.argmax(axis=1), np.searchsorted(races, race_pred, sorter=np.argsort(races))
    chosen = np.argsort(races)[chosen]
    race_p[rows, top], race_p[rows, chosen] = race_p[rows, chosen], race_p[rows, top]
    race_p *= 0.99
    gender_true = rng.choice(["Male", "Female"], n)
    gender_true[race_true == "Indian"] = "Male"  # Indian: no woman
    gender_pred = np.where(rng.random(n) < 0.85, gender_true, np.where(gender_true == "Male", "Female", "Male"))
    p_female = np.where(gender_pred == "Female", 0.7, 0.3) + rng.normal(0, 0.15, n)
    p_female = np.where(gender_pred == "Female", np.clip(p_female, 0.5, 0.99), np.clip(p_female, 0.01, 0.5))
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)], "race": race_true, "gender": gender_true,
                          "gender_true": gender_true, "gender_pred": gender_pred,
                          "gender_prob_Male": 1 - p_female, "gender_prob_Female": p_female,
                          "race_true": race_true, "race_pred": race_pred,
                          **{f"race_prob_{c}": race_p[:, i] for i, c in enumerate(races)}})
    frame.to_csv(tmp_path / "predictions.csv", index=False)
    return pd.read_csv(tmp_path / "predictions.csv")


def test_evaluate_and_audit_agree_on_the_same_csv(tmp_path):
    frame = _predictions(tmp_path)
    report = all_task_metrics(frame)
    table_, source = load_predictions(tmp_path / "predictions.csv")
    audit = audit_predictions(table_, AuditConfig(n_boot=0), source)
    for task in ("gender", "race"):
        for metric in ("accuracy", "macro_f1", "roc_auc"):
            assert report[task][metric] == pytest.approx(
                audit.metric(task, "overall", "all", metric).value, abs=1e-12), (task, metric)
    table = gender_rates_by_race(frame).set_index("race")
    for race in ("White", "Black", "Asian", "Indian"):
        for column, metric in (("accuracy", "accuracy"), ("fpr_male_as_female", "fpr"),
                               ("fnr_female_as_male", "fnr")):
            ours, theirs = table.loc[race, column], audit.metric("gender", "race", race, metric).value
            assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-12)
    assert math.isnan(table.loc["Indian", "fnr_female_as_male"]) and table.loc["Indian", "n_female"] == 0
    assert table.loc["(all)", "n"] == len(frame)


def test_the_chosen_definitions():
    from facefair.audit.metrics import macro_f1, macro_roc_auc
    # Macro-F1 over the classes in the truth: a predicted-only class does not halve the score.
    assert macro_f1(["a", "a", "b"], ["a", "c", "b"]) == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(macro_f1(["a", "a"], ["a", "b"]))  # one true class: not applicable
    # ROC-AUC on the raw probability columns.
    proba = np.array([[0.2, 0.1, 0.1], [0.1, 0.3, 0.5], [0.3, 0.2, 0.1]])
    auc = macro_roc_auc(np.array(["a", "b", "a"]), proba, {"a": 0, "b": 1, "c": 2}, ("a", "b", "c"), None)
    assert auc == pytest.approx(1.0)  # a's column ranks both a rows first; b's column ranks the b row first
    assert AuditConfig().positive_classes["gender"] == "Female"


def test_cli_defaults_are_the_audit_configs():
    import argparse

    from facefair.audit.cli import config_from_args, register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    assert config_from_args(parser.parse_args(["audit", "preds.csv"])) == AuditConfig()
