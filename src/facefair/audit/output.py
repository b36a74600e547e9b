"""Writing an audit: ``audit.json``, tidy CSVs and the HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair.audit.config import AuditResult
from facefair.audit.report_html import render_html
from facefair.run import AUDIT_HTML, AUDIT_JSON, AUDIT_TABLES, Run

SCHEMA_VERSION = 1


def _clean(value):
    """JSON-safe: NaN and infinities become null (standard JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [_clean(r) for r in frame.astype(object).where(frame.notna(), None).to_dict("records")]


def result_to_dict(result: AuditResult) -> dict:
    gm = result.group_metrics
    overall = {}
    for task, rows in gm[(gm.attribute == "overall") & gm["class"].isna()].groupby("task", sort=False):
        overall[task] = {r.metric: {"value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": int(r.n)}
                         for r in rows.itertuples()}
    confusion: dict = {}
    for (task, attribute, group), rows in result.confusion.groupby(["task", "attribute", "group"], sort=False):
        classes = result.task(task).classes
        matrix = rows.pivot(index="true", columns="pred", values="count").reindex(index=classes, columns=classes)
        confusion.setdefault(task, {}).setdefault(attribute, {})[group] = matrix.fillna(0).astype(int).values.tolist()
    return _clean({
        "schema_version": SCHEMA_VERSION,
        "source": result.source,
        "n_rows": result.n_rows,
        "config": result.config.to_dict(),
        "tasks": [t.to_dict() for t in result.tasks],
        "attributes": result.attributes,
        "summary": result.summary,
        "notes": result.notes,
        "definitions": result.definitions,
        "overall": overall,
        "gaps": _records(result.gaps),
        "group_metrics": _records(gm),
        "confusion_matrices": confusion,
        "calibration": _records(result.calibration),
    })


def write_audit(result: AuditResult, out_dir: str | Path, task_extras: Optional[dict[str, str]] = None
                ) -> dict[str, Path]:
    """Write every output of an audit into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = Run.audit_files(out)
    group_metrics, gaps, calibration, confusion = AUDIT_TABLES
    paths[AUDIT_JSON].write_text(json.dumps(result_to_dict(result), indent=1, allow_nan=False), encoding="utf-8")
    result.group_metrics.to_csv(paths[group_metrics], index=False)
    result.gaps.to_csv(paths[gaps], index=False)
    result.calibration.to_csv(paths[calibration], index=False)
    result.confusion.to_csv(paths[confusion], index=False)
    paths[AUDIT_HTML].write_text(render_html(result, task_extras), encoding="utf-8")
    return paths
