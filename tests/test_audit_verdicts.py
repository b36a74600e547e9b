"""Verdicts, power and the count bootstrap (issue 31): the audit claims only what the data supports."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, norm

from facefair.audit import AuditConfig, audit_predictions, load_predictions, render_html
from facefair.audit import bootstrap as B
from facefair.audit import cells as C
from facefair.audit import verdicts as V
from facefair.audit.synthetic import Planted, null_table, write_csv

FAST = dict(n_boot=0)


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](\s|$)", text))


def test_count_bootstrap_matches_the_row_bootstrap():
    """Multinomial draws of one group's cells have the distribution of row resamples: same spread
    and same percentiles, within Monte-Carlo error."""
    rng = np.random.default_rng(0)
    n, k, n_boot = 400, 3, 4000
    true_idx = rng.integers(0, k, n)
    pred_idx = np.where(rng.random(n) < 0.8, true_idx, rng.integers(0, k, n))
    rows = np.concatenate([B.classification_replicates(w, true_idx, pred_idx, ("a", "b", "c"))["accuracy"]
                           for w in B.weight_chunks(B.stream(1, "rows"), n, n_boot)])
    cells = C.classification_cells(np.zeros(n, np.int64), 1, true_idx, pred_idx, ("a", "b", "c"), None,
                                   None, None, 10, [])
    counts = C.classification_group_replicates(cells, 0, B.stream(2, "cells"), n_boot)["accuracy"]
    se = rows.std()
    assert counts.mean() == pytest.approx(rows.mean(), abs=4 * se / np.sqrt(n_boot) * np.sqrt(2))
    assert counts.std() == pytest.approx(se, rel=0.06)  # sd of an sd estimate from 4000 draws: ~1.1%
    for q in (0.025, 0.975):
        assert np.quantile(counts, q) == pytest.approx(np.quantile(rows, q), abs=0.25 * se)


def test_count_bootstrap_of_exact_age_matches_the_row_bootstrap():
    rng = np.random.default_rng(1)
    n, n_boot = 300, 4000
    y_true = rng.uniform(0, 80, n)
    y_pred = y_true + rng.normal(0, 6, n)
    rows = np.concatenate([B.regression_replicates(w, y_true, y_pred)["mae"]
                           for w in B.weight_chunks(B.stream(1, "rows"), n, n_boot)])
    errors = y_pred - y_true
    bins, n_bins = C.error_bins(errors, np.ones(n, bool))
    cells = C.regression_cells(np.zeros(n, np.int64), 1, errors, bins, n_bins)
    assert C.regression_point(cells)["mae"][0, 0] == pytest.approx(np.abs(errors).mean())  # exact point
    counts = C.regression_group_replicates(cells, 0, B.stream(2, "cells"), n_boot)["mae"]
    assert counts.std() == pytest.approx(rows.std(), rel=0.06)
    assert counts.mean() == pytest.approx(rows.mean(), abs=0.1 * rows.std())


def test_binned_auc_is_within_its_stated_bound_of_sklearn():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(4)
    n = 30_000
    truth = rng.random(n) < 0.3
    score = np.clip(rng.normal(np.where(truth, 0.62, 0.45), 0.15), 0, 1)  # ~all distinct: binned
    sb = C.score_bins(score, np.ones(n, bool), "x")
    hist = np.stack([np.bincount(sb.bins[~truth], minlength=sb.n_bins), np.bincount(sb.bins[truth],
                                                                                   minlength=sb.n_bins)])
    ours, bound = C.auc_from_hist(hist[1], hist[0]), C.auc_error_bound(hist[1], hist[0])
    assert bound < 0.002
    assert abs(ours - roc_auc_score(truth, score)) <= bound + 1e-12


def test_a_null_table_claims_no_gap():
    """Same error process in every group: nothing is significant, and the summary says so."""
    result = audit_predictions(null_table(20_000, seed=3), AuditConfig(**FAST))
    tested = result.gaps[result.gaps.verdict.isin([V.SIGNIFICANT, V.NO_DIFFERENCE])]
    assert result.family_size >= 40 and len(tested) >= result.family_size
    assert not (result.gaps.verdict == V.SIGNIFICANT).any()
    assert f"No gap between groups is significant after correcting for {result.family_size} comparisons" \
        in result.summary
    assert "consistent with no difference" in result.summary


def test_the_old_overlap_wording_is_gone():
    result = audit_predictions(null_table(3_000, seed=5, planted=Planted(drop=0.08)), AuditConfig(n_boot=100))
    html = render_html(result)
    for text in (result.summary, html):
        assert "do not overlap" not in text and "intervals overlap" not in text


def test_a_planted_gap_is_found_and_adjusted():
    """A 5-point accuracy gap for Black faces at 5,000 rows: significant after Holm, named, with the
    difference's own CI; tasks without a planted gap claim nothing."""
    result = audit_predictions(null_table(5_000, seed=0, planted=Planted("gender", "Black", 0.05)),
                               AuditConfig(n_boot=200))
    gap = result.gap("gender", "race", "accuracy_difference")
    assert gap.verdict == V.SIGNIFICANT and gap.worst_group == "Black"
    assert gap.p_value < gap.p_holm < result.config.alpha  # adjusted upward, still below alpha
    assert gap.difference_ci_low > 0 and gap.difference_ci_low < gap.value < gap.difference_ci_high
    others = result.gaps[(result.gaps.task != "gender") & (result.gaps.verdict == V.SIGNIFICANT)]
    assert others.empty
    assert f"significant after correcting for {result.family_size} comparisons" in result.summary
    assert "gender classification accuracy across race" in result.summary


def test_holm_is_statsmodels_holm_over_the_family():
    from statsmodels.stats.multitest import multipletests
    result = audit_predictions(null_table(4_000, seed=2, planted=Planted(drop=0.06)), AuditConfig(**FAST))
    own = result.gaps[result.gaps.metric.isin(["accuracy_difference", "fpr_difference", "fnr_difference",
                                               "equalized_odds_difference", "demographic_parity_difference",
                                               "mae_difference"]) & result.gaps.p_value.notna()]
    assert len(own) == result.family_size
    expected = multipletests(own.p_value, method="holm")[1]
    np.testing.assert_allclose(own.p_holm, expected)
    shared = result.gap("gender", "race", "worst_group_accuracy")  # the same hypothesis as the accuracy gap
    assert shared.p_holm == result.gap("gender", "race", "accuracy_difference").p_holm


def test_summary_stays_short_on_a_table_with_many_thin_cells():
    result = audit_predictions(null_table(2_000, seed=1, planted=Planted(drop=0.1)),
                               AuditConfig(intersections=(("race", "gender"), ("race", "age_group")), **FAST))
    assert (result.group_metrics.thin_cell | result.group_metrics.flagged).sum() > 20
    # The findings stay within five sentences; what the input table got wrong (here: negative age
    # predictions of the synthetic babies) is one more sentence of its own, the notes' heads.
    findings, marker, problems = result.summary.partition(" The input table has ")
    assert _sentences(findings) <= 5 and len(findings.split()) <= 190
    assert not marker or _sentences(marker + problems) == 1
    html = render_html(result)
    assert "<details><summary>Not judged" in html and "too thin" in html


def test_one_vs_rest_test_agrees_with_scipy_and_falls_back_to_fisher():
    table = np.array([[30, 970], [50, 950]])  # two groups: one 2x2 test, no Bonferroni
    test = V.one_vs_rest(table)
    assert test.p == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    sparse = V.one_vs_rest(np.array([[0, 40], [3, 37], [1, 60]]))
    assert "Fisher" in sparse.method and 0 < sparse.p <= 1


def test_detectable_difference_is_the_textbook_two_proportion_formula():
    level = 0.05
    mdd = V.detectable(np.array([1000, 1000]), 0.09, 1, level, compared=1)
    textbook = (norm.isf(level / 2) + norm.isf(0.2)) * np.sqrt(0.09 * (1 / 1000 + 1 / 1000))
    np.testing.assert_allclose(mdd, textbook, rtol=1e-9)
    # The audit names the groups that are too small for a gap that matters.
    result = audit_predictions(null_table(3_000, seed=0), AuditConfig(**FAST))
    gm = result.group_metrics
    acc = gm[(gm.task == "gender") & (gm.attribute == "race") & (gm.metric == "accuracy")]
    assert acc.mdd.notna().all() and (np.diff(acc.sort_values("n").mdd.to_numpy()) <= 1e-12).all()
    assert "too small to detect a 5-point accuracy shift" in result.summary


def test_reader_keeps_used_columns_text_as_text_and_numbers_as_numbers(tmp_path):
    frame = null_table(50, seed=0)
    frame["split"] = "test"
    frame["notes"] = "x"
    path = tmp_path / "predictions.csv"
    write_csv(frame, path)
    loaded, _ = load_predictions(path)
    assert "notes" not in loaded and "split" not in loaded and "age_group" in loaded
    assert loaded["age_group"].isin(["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                                     "70+"]).all()  # never parsed as numbers or dates
    assert pd.api.types.is_float_dtype(loaded["gender_prob_Female"])
    text = path.read_text().replace(f"{frame.gender_prob_Female.iloc[0]:.4f}".rstrip("0"), "n/a", 1)
    path.write_text(text)
    again, _ = load_predictions(path)  # a bad number: read as text, as before
    assert len(again) == 50


@pytest.mark.parametrize("task_name", ["gender", "race"])
def test_cell_counts_give_the_metricframe_values(task_name):
    """One definition per metric: the counts path the audit uses equals fairlearn's MetricFrame path."""
    from facefair.audit.groups import detect_tasks
    from facefair.audit.metrics import by_group_values, classification_metric_frame, derive_aggregates
    frame = null_table(400, seed=7)
    task = detect_tasks(frame, [task_name], {"gender": "Female"}, [])[0]
    rows = np.flatnonzero(task.valid)
    groups = frame.race.to_numpy(object)[rows]
    order = sorted(set(groups))
    reference = by_group_values(classification_metric_frame(task, rows, groups, 10, np.ones(len(frame), bool)),
                                order, task)
    codes = np.full(len(frame), -1)
    codes[rows] = [order.index(g) for g in groups]
    confidence = task.confidence()
    scores = [C.score_bins(task.proba[:, task.prob_classes.index(c)], task.valid, c)
              for c in ([task.positive_class] if task.positive_class else task.classes)]
    from facefair.audit.calibration import bin_index
    cells = C.classification_cells(codes, len(order), task.indices(task.y_true), task.indices(task.y_pred),
                                   task.classes, task.positive_class, bin_index(confidence, 10), confidence, 10,
                                   scores)
    ours = derive_aggregates(C.classification_point(cells), task)
    for key, values in reference.items():
        np.testing.assert_allclose(ours[key], values, rtol=1e-9, atol=1e-12, err_msg=key)


def test_scale_helpers_count_claims_before_and_after():
    """The benchmark's logic on tiny tables: the old overlap rule is recomputed from the audit's own
    intervals, and a planted gap is counted as found only with the right worst group."""
    from facefair.audit import scale
    planted = audit_predictions(null_table(4_000, seed=0, planted=Planted(drop=0.2)), AuditConfig(n_boot=100))
    assert "gender accuracy across race" in scale.old_rule_claims(planted) or \
        "gender accuracy across race:gender" in scale.old_rule_claims(planted)
    null = scale.calibration(2, 2_000, n_boot=50, progress=False)
    assert null["audits"] == 2 and null["claims_after"] == 0 and 0 <= null["claims_before"] <= 2
    found = scale.recovery(4_000, 0.2, 1, progress=False)
    assert found["found"] == 1 and found["max_p_holm"] < 0.05


def test_intervals_do_not_depend_on_probability_columns_or_their_order():
    """The same predictions with and without probability columns (or with them reordered) give the
    same accuracy and its interval: the cells are resampled in one class order."""
    from facefair.audit import AuditConfig, audit_predictions

    rng = np.random.default_rng(3)
    n = 400
    truth = rng.choice(["Male", "Female"], n)
    wrong = rng.random(n) < 0.2
    pred = np.where(wrong, np.where(truth == "Male", "Female", "Male"), truth)
    p_female = np.where(pred == "Female", 0.8, 0.2)
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)], "race": rng.choice(["White", "Black"], n),
                          "gender": truth, "gender_true": truth, "gender_pred": pred,
                          "gender_prob_Male": 1 - p_female, "gender_prob_Female": p_female})
    config = AuditConfig(n_boot=200, tasks=("gender",))
    figures = []
    for table in (frame, frame.drop(columns=["gender_prob_Male", "gender_prob_Female"]),
                  frame[[c for c in frame.columns if c != "gender_prob_Male"] + ["gender_prob_Male"]]):
        m = audit_predictions(table, config, "t").metric("gender", "race", "White", "accuracy")
        figures.append((m.value, m.ci_low, m.ci_high))
    assert figures[0] == figures[1] == figures[2]
