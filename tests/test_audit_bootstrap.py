"""The vectorised bootstrap agrees with the MetricFrame path and with a plain resampling loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from facefair.audit import AuditConfig, audit_predictions
from facefair.audit import bootstrap as B
from facefair.audit.groups import detect_tasks
from facefair.audit.metrics import by_group_values, classification_metric_frame

RACES = ["White", "Black", "Asian", "Indian", "Others"]


def synthetic(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A predictions table shaped like `facefair evaluate`'s, with a model that is worse for some groups."""
    rng = np.random.default_rng(seed)
    race = rng.choice(RACES, n, p=[0.4, 0.2, 0.15, 0.15, 0.1])
    gender = rng.choice(["Male", "Female"], n)
    columns = {"path": [f"{i}.jpg" for i in range(n)], "race": race, "gender": gender, "split": "test"}
    for task, classes, truth in (("gender", ["Male", "Female"], gender), ("race", RACES, race)):
        k = len(classes)
        index = np.array([classes.index(t) for t in truth])
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), index] += np.where(race == "Black", 1.0, 2.5)
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        columns[f"{task}_true"] = truth
        columns[f"{task}_pred"] = np.array(classes)[proba.argmax(axis=1)]
        for i, c in enumerate(classes):
            columns[f"{task}_prob_{c}"] = proba[:, i]
    return pd.DataFrame(columns)


@pytest.mark.parametrize("task_name", ["gender", "race"])
def test_unit_weights_reproduce_the_metricframe_values(task_name):
    frame = synthetic(300)
    task = detect_tasks(frame, [task_name], {"gender": "Female"}, [])[0]
    rows = np.flatnonzero(task.valid)
    groups = frame.race.to_numpy(object)[rows]
    order = RACES
    point = by_group_values(classification_metric_frame(task, rows, groups, 10, np.ones(len(frame), bool)),
                            order, task)
    true_idx, pred_idx, conf = task.indices(task.y_true), task.indices(task.y_pred), task.confidence()
    for gi, group in enumerate(order):
        idx = rows[groups == group]
        reps = B.classification_replicates(np.ones((1, len(idx)), np.float32), true_idx[idx], pred_idx[idx],
                                           task.classes, proba=task.proba[idx], prob_classes=task.prob_classes,
                                           positive=task.positive_class, confidence=conf[idx], n_bins=10)
        for key, values in point.items():
            if key in ("fpr", "fnr", "selection_rate"):
                continue  # derived after the bootstrap, from the keys checked here
            np.testing.assert_allclose(reps[key][0], values[0, gi], rtol=1e-5, atol=1e-6, err_msg=f"{group} {key}")


def test_weighted_auc_matches_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(3)
    score = rng.integers(0, 6, 80) / 5.0  # many ties
    truth = rng.random(80) < 0.4
    weights = rng.integers(0, 4, size=(5, 80)).astype(np.float32)
    ours = B.weighted_auc(weights, truth, score)
    for b in range(5):
        assert ours[b] == pytest.approx(roc_auc_score(truth, score, sample_weight=weights[b]), abs=1e-6)


def test_replicates_are_row_resamples_within_the_group():
    """Same stream, drawn as explicit row indices and scored by sklearn one replicate at a time."""
    rng_truth = np.random.default_rng(5)
    n, classes = 57, ("a", "b", "c")
    true_idx = rng_truth.integers(0, 3, n)
    pred_idx = np.where(rng_truth.random(n) < 0.7, true_idx, rng_truth.integers(0, 3, n))
    weights = np.concatenate(list(B.weight_chunks(B.stream(7, "t", "a", "g"), n, 40)))
    assert weights.shape == (40, n) and (weights.sum(axis=1) == n).all()
    reps = B.classification_replicates(weights, true_idx, pred_idx, classes)
    for b in range(40):
        rows = np.repeat(np.arange(n), weights[b].astype(int))
        assert reps["accuracy"][b] == pytest.approx(accuracy_score(true_idx[rows], pred_idx[rows]), abs=1e-6)
        assert reps["macro_f1"][b] == pytest.approx(f1_score(true_idx[rows], pred_idx[rows], average="macro"),
                                                    abs=1e-6)


def test_chunking_does_not_change_the_draws(monkeypatch):
    whole = np.concatenate(list(B.weight_chunks(B.stream(1, "x"), 50, 30)))
    monkeypatch.setattr(B, "MAX_CELLS", 50 * 7)  # 7 replicates per chunk
    chunked = list(B.weight_chunks(B.stream(1, "x"), 50, 30))
    assert len(chunked) == 5 and all((c.sum(axis=1) == 50).all() for c in chunked)
    np.testing.assert_array_equal(np.concatenate(chunked), whole)  # the very same draws, not just the shape


def test_intervals_are_seeded_and_contain_the_group_estimates():
    frame = synthetic(600)
    config = AuditConfig(attributes=("race",), intersections=(), n_boot=200, seed=11, min_group_size=30)
    first = audit_predictions(frame, config)
    again = audit_predictions(frame, config)
    pd.testing.assert_frame_equal(first.group_metrics, again.group_metrics)
    pd.testing.assert_frame_equal(first.gaps, again.gaps)
    other = audit_predictions(frame, AuditConfig(attributes=("race",), intersections=(), n_boot=200, seed=12))
    assert not np.allclose(first.group_metrics.ci_low.fillna(-1), other.group_metrics.ci_low.fillna(-1))
    gm = first.group_metrics.dropna(subset=["value", "ci_low", "ci_high"])
    assert (gm.ci_low <= gm.ci_high).all()
    accuracy = gm[gm.metric == "accuracy"]
    assert ((accuracy.ci_low <= accuracy.value) & (accuracy.value <= accuracy.ci_high)).all()
    gaps = first.gaps.dropna(subset=["value"])
    assert gaps.ci_low.notna().all() and (gaps.ci_low <= gaps.ci_high).all()


def test_adding_an_attribute_leaves_other_intervals_unchanged():
    frame = synthetic(300)
    narrow = audit_predictions(frame, AuditConfig(attributes=("race",), intersections=(), n_boot=50))
    wide = audit_predictions(frame, AuditConfig(attributes=("gender", "race"), intersections=(("race", "gender"),),
                                                n_boot=50))
    # mdd (power after the correction) depends on how many tests the audit runs, so it may change.
    keep = lambda gm: gm[gm.attribute == "race"].drop(columns="mdd").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(narrow.group_metrics), keep(wide.group_metrics))


def test_no_resamples_means_no_intervals():
    result = audit_predictions(synthetic(120), AuditConfig(attributes=("race",), intersections=(), n_boot=0))
    assert result.group_metrics.ci_low.isna().all() and result.gaps.ci_high.isna().all()
    assert result.group_metrics.value.notna().any()


def test_percentile_interval_handles_undefined_and_infinite_replicates():
    x = np.array([[1.0, np.nan], [2.0, np.inf], [3.0, np.inf], [np.nan, np.inf]])
    low, high = B.percentile_interval(x, 0.5)
    assert low[0] == pytest.approx(1.5) and high[0] == pytest.approx(2.5)
    assert np.isinf(low[1]) and np.isinf(high[1])
