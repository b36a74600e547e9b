"""Hand-computed cases: every number below was worked out on paper from the rows in the test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from facefair.audit import AuditConfig, audit_predictions

EXACT = dict(abs=1e-12)


def _gender_table() -> pd.DataFrame:
    """10 rows, two race groups.  A: M->M, M->F, M->M, F->F, F->M.  B: M->M, M->M, F->F, F->F, F->F."""
    truth = ["Male", "Male", "Male", "Female", "Female", "Male", "Male", "Female", "Female", "Female"]
    pred = ["Male", "Female", "Male", "Female", "Male", "Male", "Male", "Female", "Female", "Female"]
    race = ["White"] * 5 + ["Black"] * 5
    return pd.DataFrame({"path": [f"{i}.jpg" for i in range(10)], "race": race, "gender": truth,
                         "gender_true": truth, "gender_pred": pred, "split": "test"})


def _config(**kw) -> AuditConfig:
    base = dict(attributes=("race",), intersections=(), n_boot=0, min_group_size=1)
    base.update(kw)
    return AuditConfig(**base)


def test_binary_gender_rates_per_group_by_hand():
    result = audit_predictions(_gender_table(), _config())
    m = lambda g, k: result.metric("gender", "race", g, k).value  # noqa: E731
    # White: 3 males, 1 predicted female -> FPR 1/3; 2 females, 1 predicted male -> FNR 1/2.
    assert m("White", "fpr") == pytest.approx(1 / 3, **EXACT)
    assert m("White", "fnr") == pytest.approx(1 / 2, **EXACT)
    assert m("White", "accuracy") == pytest.approx(3 / 5, **EXACT)
    assert m("White", "selection_rate") == pytest.approx(2 / 5, **EXACT)  # predicted Female
    # F1(Male) = 2*2/(2*2+1+1) = 2/3, F1(Female) = 2*1/(2+1+1) = 1/2.
    assert m("White", "macro_f1") == pytest.approx((2 / 3 + 1 / 2) / 2, **EXACT)
    assert m("Black", "fpr") == 0 and m("Black", "fnr") == 0 and m("Black", "accuracy") == 1
    assert m("Black", "selection_rate") == pytest.approx(3 / 5, **EXACT)
    assert result.task("gender").positive_class == "Female"
    sizes = result.group_metrics.query("attribute == 'race' and metric == 'accuracy'").set_index("group").n
    assert sizes.to_dict() == {"White": 5, "Black": 5}
    overall = result.metric("gender", "overall", "all", "accuracy")
    assert overall.value == pytest.approx(8 / 10, **EXACT) and overall.n == 10


def test_binary_gaps_by_hand_and_against_fairlearn():
    frame = _gender_table()
    result = audit_predictions(frame, _config())
    g = lambda k: result.gap("gender", "race", k).value  # noqa: E731
    assert g("accuracy_difference") == pytest.approx(0.4, **EXACT)
    assert g("worst_group_accuracy") == pytest.approx(0.6, **EXACT)
    assert g("accuracy_max_min_ratio") == pytest.approx(1 / 0.6, **EXACT)
    assert g("degree_of_bias") == pytest.approx(0.2, **EXACT)  # std of [0.6, 1.0], ddof=0
    assert math.isinf(g("skewed_error_ratio"))  # Black makes no error
    assert g("fpr_difference") == pytest.approx(1 / 3, **EXACT)
    # TPR: White 1/2, Black 1 -> 0.5 beats the FPR difference of 1/3.
    assert g("equalized_odds_difference") == pytest.approx(0.5, **EXACT)
    assert g("demographic_parity_difference") == pytest.approx(0.2, **EXACT)
    assert result.gap("gender", "race", "accuracy_difference").worst_group == "White"
    assert result.gap("gender", "race", "accuracy_difference").best_group == "Black"
    y_true, y_pred = frame.gender_true == "Female", frame.gender_pred == "Female"
    assert g("equalized_odds_difference") == pytest.approx(
        equalized_odds_difference(y_true, y_pred, sensitive_features=frame.race), **EXACT)
    assert g("demographic_parity_difference") == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=frame.race), **EXACT)


def _race_table() -> pd.DataFrame:
    """3-class race task over two gender groups.
    Male:   W->W, W->B, B->B, B->B, A->W, A->A.   Female: W->W, W->W, B->A, B->B (no Asian face)."""
    truth = ["White", "White", "Black", "Black", "Asian", "Asian", "White", "White", "Black", "Black"]
    pred = ["White", "Black", "Black", "Black", "White", "Asian", "White", "White", "Asian", "Black"]
    gender = ["Male"] * 6 + ["Female"] * 4
    return pd.DataFrame({"path": [f"{i}.jpg" for i in range(10)], "race": truth, "gender": gender,
                         "race_true": truth, "race_pred": pred})


def test_multiclass_one_vs_rest_rates_by_hand():
    result = audit_predictions(_race_table(), _config(attributes=("gender",)))
    assert result.task("race").positive_class is None
    v = lambda g, k, c=None: result.metric("race", "gender", g, k, c).value  # noqa: E731
    assert v("Male", "accuracy") == pytest.approx(4 / 6, **EXACT)
    assert v("Male", "fpr_ovr", "White") == pytest.approx(1 / 4, **EXACT)
    assert v("Male", "fnr_ovr", "White") == pytest.approx(1 / 2, **EXACT)
    assert v("Male", "fpr_ovr", "Black") == pytest.approx(1 / 4, **EXACT)
    assert v("Male", "fnr_ovr", "Black") == 0
    assert v("Male", "fpr_ovr", "Asian") == 0
    assert v("Male", "fnr_ovr", "Asian") == pytest.approx(1 / 2, **EXACT)
    assert v("Male", "selection_rate_ovr", "Black") == pytest.approx(3 / 6, **EXACT)
    assert v("Male", "fpr") == pytest.approx((1 / 4 + 1 / 4 + 0) / 3, **EXACT)
    assert v("Male", "fnr") == pytest.approx((1 / 2 + 0 + 1 / 2) / 3, **EXACT)
    assert v("Male", "macro_f1") == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, **EXACT)
    # Female has no Asian face: the Asian FNR is undefined (fairlearn alone would say 0).
    assert math.isnan(v("Female", "fnr_ovr", "Asian"))
    assert v("Female", "fpr_ovr", "Asian") == pytest.approx(1 / 4, **EXACT)
    assert v("Female", "fnr") == pytest.approx((0 + 1 / 2) / 2, **EXACT)  # mean over defined classes
    assert v("Female", "fpr") == pytest.approx((0 + 0 + 1 / 4) / 3, **EXACT)
    # F1 over the group's true classes (no Asian face; the wrong Asian prediction costs Black's recall).
    assert v("Female", "macro_f1") == pytest.approx((1 + 2 / 3) / 2, **EXACT)


def test_multiclass_parity_is_max_over_classes():
    result = audit_predictions(_race_table(), _config(attributes=("gender",)))
    g = lambda k, c=None: result.gap("race", "gender", k, c).value  # noqa: E731
    assert g("equalized_odds_difference_ovr", "White") == pytest.approx(1 / 2, **EXACT)
    assert g("equalized_odds_difference_ovr", "Black") == pytest.approx(1 / 2, **EXACT)
    # Asian: FNR defined in one group only, so only its FPR difference (1/4) counts.
    assert g("equalized_odds_difference_ovr", "Asian") == pytest.approx(1 / 4, **EXACT)
    assert g("equalized_odds_difference") == pytest.approx(1 / 2, **EXACT)
    assert g("demographic_parity_difference_ovr", "White") == pytest.approx(1 / 6, **EXACT)
    assert g("demographic_parity_difference_ovr", "Black") == pytest.approx(1 / 4, **EXACT)
    assert g("demographic_parity_difference_ovr", "Asian") == pytest.approx(1 / 12, **EXACT)
    assert g("demographic_parity_difference") == pytest.approx(1 / 4, **EXACT)
    assert "largest for Black" in result.gap("race", "gender", "demographic_parity_difference").note
    assert "maximum over classes" in result.definitions["equalized_odds_difference"]


def test_parity_not_computed_across_the_tasks_own_attribute():
    result = audit_predictions(_race_table(), _config(attributes=("race", "gender")))
    race_gaps = result.gaps[(result.gaps.task == "race") & (result.gaps.attribute == "race")]
    assert "accuracy_difference" in set(race_gaps.metric)
    assert not race_gaps.metric.str.contains("parity|odds").any()


def test_small_groups_are_flagged_shown_and_left_out_of_gaps():
    frame = _gender_table()
    frame.loc[9, "race"] = "Asian"  # a one-row group
    result = audit_predictions(frame, _config(min_group_size=2))
    asian = result.group_metrics.query("task == 'gender' and attribute == 'race' and group == 'Asian'")
    assert len(asian) > 0 and asian.flagged.all() and (asian.n == 1).all()
    gap = result.gap("gender", "race", "accuracy_difference")
    assert gap.excluded_groups == "Asian" and gap.n_groups == 2
    # Gap over White (3/5) and Black (4/4) only.
    assert gap.value == pytest.approx(0.4, **EXACT)
    assert "too small" in result.summary or "fewer than 2" in result.summary


def test_exact_age_mae_by_hand():
    frame = pd.DataFrame({"gender": ["Male", "Male", "Female", "Female", "Female"],
                          "age_true": [20, 30, 40, 50, 60], "age_pred": [21, 27, 42, 44, 64]})
    result = audit_predictions(frame, _config(attributes=("gender",)))
    assert result.task("age").kind == "regression"
    assert result.metric("age", "gender", "Male", "mae").value == pytest.approx(2.0, **EXACT)
    assert result.metric("age", "gender", "Female", "mae").value == pytest.approx(4.0, **EXACT)
    assert result.metric("age", "gender", "Female", "mean_error").value == pytest.approx(0.0, **EXACT)
    assert result.metric("age", "gender", "Male", "mean_error").value == pytest.approx(-1.0, **EXACT)
    assert result.gap("age", "gender", "degree_of_bias").value == pytest.approx(1.0, **EXACT)
    assert result.gap("age", "gender", "mae_difference").value == pytest.approx(2.0, **EXACT)
    assert result.gap("age", "gender", "worst_group_mae").worst_group == "Female"


def test_expected_calibration_error_by_hand():
    from sklearn.calibration import calibration_curve

    from facefair.audit.calibration import expected_calibration_error, reliability_bins
    confidence = np.array([0.95, 0.85, 0.65, 0.62])
    correct = np.array([1, 0, 1, 1])
    # bins (0.9,1]: |1-0.95|; (0.8,0.9]: |0-0.85|; (0.6,0.7]: |2-1.27| (summed), over 4 rows.
    assert expected_calibration_error(confidence, correct, 10) == pytest.approx((0.05 + 0.85 + 0.73) / 4, **EXACT)
    bins = reliability_bins(confidence, correct, 10)
    filled = bins[bins.n > 0]
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    np.testing.assert_allclose(filled.accuracy, prob_true)
    np.testing.assert_allclose(filled.mean_confidence, prob_pred)


def test_ece_and_auc_per_group_from_probabilities():
    from sklearn.metrics import roc_auc_score
    frame = _gender_table()
    p_female = [0.22, 0.64, 0.33, 0.91, 0.46, 0.12, 0.23, 0.81, 0.72, 0.95]
    frame["gender_prob_Male"] = [1 - p for p in p_female]
    frame["gender_prob_Female"] = p_female
    result = audit_predictions(frame, _config())
    white = frame[frame.race == "White"]
    # Females .91 and .46 against males .22, .64, .33: 3 + 2 of 6 pairs ranked right.
    auc = result.metric("gender", "race", "White", "roc_auc").value
    assert auc == pytest.approx(5 / 6, **EXACT)
    assert auc == pytest.approx(roc_auc_score(white.gender_true == "Female", white.gender_prob_Female), **EXACT)
    # Confidence in the predicted label: .78 ok, .64 wrong, .67 ok, .91 ok, .54 wrong;
    # bins (.7,.8], (.6,.7] twice, (.9,1], (.5,.6].
    expected = (abs(1 - 0.78) + abs(1 - (0.64 + 0.67)) + abs(1 - 0.91) + abs(0 - 0.54)) / 5
    assert result.metric("gender", "race", "White", "ece").value == pytest.approx(expected, abs=1e-12)
    assert not result.calibration.empty


def test_third_party_table_without_probabilities_or_other_tasks():
    frame = pd.DataFrame({"image": ["a", "b", "c", "d"], "race": ["white", "BLACK", "White", "Black"],
                          "gender_true": ["female", "m", "Male", "F"], "gender_pred": ["F", "male", "female", "f"],
                          "model": "acme-v2"})
    result = audit_predictions(frame, _config(attributes=("race", "gender", "age_group"), intersections=(
        ("race", "gender"),)))
    assert [t.name for t in result.tasks] == ["gender"]
    assert set(result.group_metrics.query("attribute == 'race'").group) == {"White", "Black"}
    assert not (result.group_metrics.metric == "ece").any()
    assert any("calibration" in n for n in result.notes)
    assert any("'gender' is not in the table" in n for n in result.notes)
    assert result.metric("gender", "race", "White", "fpr").value == pytest.approx(1.0, **EXACT)  # the one male


def test_intersection_groups_and_sizes():
    frame = _gender_table()
    result = audit_predictions(frame, _config(attributes=("race", "gender"), intersections=(("race", "gender"),)))
    rows = result.group_metrics.query("task == 'gender' and attribute == 'race:gender' and metric == 'accuracy'")
    assert list(rows.group) == ["White:Male", "White:Female", "Black:Male", "Black:Female"]
    assert rows.n.sum() == 10
    # Within White:Male the only error is a male predicted female.
    assert result.metric("gender", "race:gender", "White:Male", "fpr").value == pytest.approx(1 / 3, **EXACT)
    assert math.isnan(result.metric("gender", "race:gender", "White:Male", "fnr").value)


def test_missing_labels_and_unknown_attributes_are_reported_not_dropped_silently():
    frame = _gender_table()
    frame.loc[0, "race"] = ""
    frame.loc[1, "gender_true"] = np.nan
    frame.loc[2, "gender_pred"] = np.nan
    result = audit_predictions(frame, _config())
    assert result.metric("gender", "overall", "all", "accuracy").n == 8
    assert result.group_metrics.query("attribute == 'race' and metric == 'accuracy'").n.sum() == 7
    assert any("no prediction" in n for n in result.notes)
    assert any("unknown for 1" in n for n in result.notes)


def test_no_task_is_an_error():
    with pytest.raises(ValueError, match="no task"):
        audit_predictions(pd.DataFrame({"race": ["White"], "path": ["x"]}), _config())


def test_rates_over_too_few_rows_are_left_out_of_gaps():
    """A class with a handful of members in a group gives an unjudgeable FNR: NaN, not a 1.0 gap."""
    from facefair.audit.metrics import mask_thin_rates

    class Task:
        classes = ("a", "b")
    values = {"fnr_ovr|a": np.array([[0.0, 1.0]]), "fpr_ovr|a": np.array([[0.1, 0.2]]),
              "fnr_ovr|b": np.array([[0.5, 0.5]]), "fpr_ovr|b": np.array([[0.3, 0.3]])}
    positives = np.array([[40, 60], [3, 97]])  # group 2 has 3 rows of class a
    masked = mask_thin_rates(values, Task, positives, min_support=30)
    assert masked["fnr_ovr|a"][0, 0] == 0.0 and np.isnan(masked["fnr_ovr|a"][0, 1])
    assert np.isnan(masked["fpr_ovr|b"][0, 1]) and masked["fpr_ovr|b"][0, 0] == 0.3  # negatives of b = 3
    assert masked["fnr_ovr|b"][0, 1] == 0.5


def _thin_cell_table() -> pd.DataFrame:
    """The issue's case: two races of 80 rows.  White: 40 men, 40 women (4 predicted male).
    Black: 60 men, 20 women, half of them predicted male.  fairlearn: EOD = TPR .9 - .5 = 0.4."""
    truth = ["Male"] * 40 + ["Female"] * 40 + ["Male"] * 60 + ["Female"] * 20
    pred = ["Male"] * 40 + ["Male"] * 4 + ["Female"] * 36 + ["Male"] * 60 + ["Male"] * 10 + ["Female"] * 10
    race = ["White"] * 80 + ["Black"] * 80
    return pd.DataFrame({"race": race, "gender": truth, "gender_true": truth, "gender_pred": pred})


def test_thin_error_rate_cell_is_named_not_silently_dropped():
    frame = _thin_cell_table()
    result = audit_predictions(frame, _config(min_group_size=30, n_boot=50))
    gap = result.gap("gender", "race", "equalized_odds_difference")
    fairlearn_value = equalized_odds_difference(frame.gender_true == "Female", frame.gender_pred == "Female",
                                                sensitive_features=frame.race)
    assert fairlearn_value == pytest.approx(0.4, **EXACT)
    # Either fairlearn's figure, or a gap that says which cell it lost.
    if gap.value != pytest.approx(fairlearn_value, **EXACT):
        assert not gap.complete
        assert "FNR in Black (n=20)" in gap.excluded_cells and "FNR in Black (n=20)" in gap.note
    assert "largest equalized-odds difference is 0.00" not in result.summary
    # The summary points to the cells it could not judge; the report's "Not judged" list names them.
    assert "1 error-rate cell rest" in result.summary and "Not judged" in result.summary
    from facefair.audit import render_html
    assert "FNR in Black (n=20)" in render_html(result)
    # The thin rate itself is computed and shown, with its support and CI, and marked.
    fnr = result.metric("gender", "race", "Black", "fnr")
    assert fnr.value == pytest.approx(0.5, **EXACT) and fnr.support == 20 and fnr.thin_cell
    assert fnr.ci_low <= 0.5 <= fnr.ci_high and not fnr.flagged
    assert not result.metric("gender", "race", "Black", "fpr").thin_cell
    # The fnr_difference has only White left: no gap, and it says why.
    assert math.isnan(result.gap("gender", "race", "fnr_difference").value)
    assert "FNR in Black" in result.gap("gender", "race", "fnr_difference").excluded_cells
    from facefair.audit.report_html import render_html
    html = render_html(result)
    assert "FNR in Black (n=20)" in html and "too thin: n=20" in html and ">incomplete<" in html


@pytest.mark.parametrize("min_group_size", [2, 20, 30])
def test_gaps_match_fairlearn_when_no_cell_is_thin(min_group_size):
    """Cross-check with min_group_size > 1: every cell of this table holds >= 30 rows."""
    rng = np.random.default_rng(3)
    race = rng.choice(["White", "Black", "Asian"], size=600)
    truth = rng.choice(["Male", "Female"], size=600)
    flip = rng.random(600) < np.where(race == "Black", 0.25, 0.08)
    pred = np.where(flip, np.where(truth == "Male", "Female", "Male"), truth)
    frame = pd.DataFrame({"race": race, "gender_true": truth, "gender_pred": pred})
    result = audit_predictions(frame, _config(min_group_size=min_group_size))
    y_true, y_pred = frame.gender_true == "Female", frame.gender_pred == "Female"
    eod = result.gap("gender", "race", "equalized_odds_difference")
    assert eod.complete and eod.excluded_cells == ""
    assert eod.value == pytest.approx(equalized_odds_difference(y_true, y_pred, sensitive_features=race), **EXACT)
    assert result.gap("gender", "race", "demographic_parity_difference").value == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=race), **EXACT)
    # Judged by its own test (FNR and FPR together), inside the audit's Holm family.
    assert eod.verdict in ("significant", "consistent with no difference") and 0 <= eod.p_value <= eod.p_holm <= 1


def test_thin_cell_equals_fairlearn_once_the_threshold_allows_it():
    frame = _thin_cell_table()
    gap = audit_predictions(frame, _config(min_group_size=20)).gap("gender", "race", "equalized_odds_difference")
    assert gap.value == pytest.approx(0.4, **EXACT) and gap.complete


def test_tied_groups_are_not_called_worst_and_best():
    truth = ["Male"] * 10 + ["Female"] * 10 + ["Male"] * 10 + ["Female"] * 10
    pred = (["Female"] + ["Male"] * 9 + ["Female"] * 10) * 2  # 95% in both races
    frame = pd.DataFrame({"race": ["White"] * 20 + ["Black"] * 20, "gender_true": truth, "gender_pred": pred})
    result = audit_predictions(frame, _config())
    gap = result.gap("gender", "race", "accuracy_difference")
    assert gap.value == 0 and pd.isna(gap.worst_group) and "same value" in gap.note
    assert "for White" not in result.summary and "same in every race group" in result.summary


def test_partial_ties_name_every_tied_group():
    from facefair.audit.gaps import worst_and_best
    worst, best = worst_and_best("accuracy_difference", "classification",
                                 {"accuracy": np.array([[0.8, 0.9, 0.8]])}, ["A", "B", "C"])
    assert worst == "A, C" and best == "B"


def test_macro_f1_is_not_applicable_in_one_class_groups():
    frame = _gender_table()
    result = audit_predictions(frame, _config(attributes=("race", "gender"), intersections=(("race", "gender"),)))
    for attribute, group in (("gender", "Male"), ("gender", "Female"), ("race:gender", "White:Male")):
        assert math.isnan(result.metric("gender", attribute, group, "macro_f1").value)
        assert not math.isnan(result.metric("gender", attribute, group, "accuracy").value)
    assert math.isnan(result.gap("gender", "gender", "macro_f1_difference").value)
    assert "not applicable" in result.gap("gender", "gender", "macro_f1_difference").note
    # Groups with both classes keep theirs.
    assert result.metric("gender", "race", "White", "macro_f1").value == pytest.approx((2 / 3 + 1 / 2) / 2, **EXACT)


def test_question_mark_race_is_missing_not_a_group():
    frame = _gender_table()
    frame.loc[0, "race"] = "?"
    result = audit_predictions(frame, _config())
    assert set(result.group_metrics.query("attribute == 'race'").group) == {"White", "Black"}
    assert any("unknown for 1" in n for n in result.notes)
