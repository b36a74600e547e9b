"""The audit on a real model's predictions for ../shared/data/utkface.

Point ``FACEFAIR_REAL_PREDICTIONS`` at a predictions CSV (or a run folder) written by
``facefair train``/``facefair evaluate`` to audit that model; without it the suite trains its
own small model on real UTKFace faces (the session's ``tiny_run``), so the test always runs
where the shared data is.
``check_real_predictions`` holds the invariants so a fixture-based test can reuse it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefair.audit import AuditConfig, audit_predictions, load_predictions, write_audit
from facefair.audit.config import OVERALL

ENV = "FACEFAIR_REAL_PREDICTIONS"
#: Metrics that are means over rows (or ratios of row counts); their percentile interval brackets
#: the estimate for groups large enough to judge.  Max/min-type statistics (ECE, gaps) are biased
#: under resampling and are only checked for ordered bounds.
MEAN_LIKE = {"accuracy", "fpr", "fnr", "selection_rate", "mae"}


def check_real_predictions(path: str | Path, out_dir: str | Path, n_boot: int = 200) -> dict:
    frame, source = load_predictions(path)
    config = AuditConfig(n_boot=n_boot, seed=0)
    result = audit_predictions(frame, config, source)
    gm, gaps = result.group_metrics, result.gaps
    assert result.tasks, "no task audited"
    assert {"race", "gender"} <= set(result.attributes), result.notes

    for info in result.tasks:
        headline = "accuracy" if info.kind == "classification" else "mae"
        overall = gm[(gm.task == info.name) & (gm.attribute == OVERALL) & (gm.metric == headline)]
        assert len(overall) == 1 and overall.n.iloc[0] == info.n
        for attribute in result.attributes:
            rows = gm[(gm.task == info.name) & (gm.attribute == attribute) & (gm.metric == headline)]
            if rows.empty:
                continue
            # Group sizes add up to the labelled rows whose attribute is known.
            parts = attribute.split(":")
            known = frame[parts].replace("", np.nan).notna().all(axis=1)
            truth = frame[f"{info.name}_true"].replace("", np.nan).notna()
            predicted = frame[f"{info.name}_pred"].replace("", np.nan).notna()
            assert rows.n.sum() == int((known & truth & predicted).sum()), (info.name, attribute)
            assert rows.n.sum() <= info.n
            assert (rows.flagged == (rows.n < config.min_group_size)).all()
        if info.kind == "classification":
            confusion = result.confusion[result.confusion.task == info.name]
            totals = confusion.groupby(["attribute", "group"])["count"].sum()
            sizes = gm[(gm.task == info.name) & (gm.metric == "accuracy")].set_index(["attribute", "group"]).n
            assert (totals.reindex(sizes.index) == sizes).all()

    bounded = gm.dropna(subset=["value", "ci_low", "ci_high"])
    assert (bounded.ci_low <= bounded.ci_high + 1e-12).all()
    judged = bounded[bounded.metric.isin(MEAN_LIKE) & ~bounded.flagged]
    outside = judged[(judged.value < judged.ci_low - 1e-9) | (judged.value > judged.ci_high + 1e-9)]
    assert outside.empty, outside
    rates = gm[gm.metric.isin(["accuracy", "macro_f1", "fpr", "fnr", "selection_rate", "roc_auc", "ece"])]
    assert rates.value.dropna().between(0, 1).all()

    defined = gaps.dropna(subset=["value"])
    assert (defined[defined.metric.str.endswith("_difference")].value >= -1e-12).all()
    assert (defined[defined.metric.str.endswith("_ratio")].value >= 1 - 1e-12).all()
    assert (defined.ci_low.dropna() <= defined.ci_high.dropna() + 1e-12).all()
    for gap in defined[defined.metric == "accuracy_difference"].itertuples():
        groups = gm[(gm.task == gap.task) & (gm.attribute == gap.attribute) & (gm.metric == "accuracy")
                    & ~gm.flagged].value.dropna()
        assert gap.value == pytest.approx(groups.max() - groups.min())

    paths = write_audit(result, out_dir)
    json.loads(paths["audit.json"].read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    html = paths["audit.html"].read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert result.summary
    return {"result": result, "paths": paths}


@pytest.fixture
def real_predictions(request) -> Path:
    value = os.environ.get(ENV)
    if not value:
        return request.getfixturevalue("tiny_run")  # a model trained in this session on real faces
    path = Path(value)
    if not path.exists():
        pytest.fail(f"{ENV}={value} does not exist")
    return path


def test_audit_of_real_utkface_predictions(real_predictions, tmp_path):
    checked = check_real_predictions(real_predictions, tmp_path, n_boot=100)
    path = real_predictions
    frame = pd.read_csv(path / "predictions.csv" if path.is_dir() else path)
    assert checked["result"].n_rows == len(frame)
