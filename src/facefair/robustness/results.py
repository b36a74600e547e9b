"""From one predictions CSV per condition to the tidy robustness table.

Group metrics and gaps are the audit's own (``facefair.audit.audit_predictions`` on each CSV as
``load_predictions`` reads it), so a figure here is the figure ``facefair audit`` prints for the
same CSV.  What the audit has no notion of is added here, each on the audit's own reading of the
table (its task labels and its groups):

- ``accuracy_drop`` / ``mae_increase``: clean minus corrupted accuracy (corrupted minus clean MAE)
  on the rows predicted in both, per group, with a **paired** bootstrap interval (the same
  resampled faces in both conditions, so the interval is that of the difference, much narrower
  than two separate intervals suggest);
- ``largest_drop`` (the group that loses most) and ``worst_group_falls_fastest`` (1 when the
  group that was worst on clean faces is also the one that loses most);
- ``coverage``: share of faces the condition left predictable (re-framing: the detector found them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from facefair.audit import AuditConfig, audit_predictions, load_predictions
from facefair.audit import bootstrap as B
from facefair.audit.config import ALL, OVERALL
from facefair.audit.groups import attribute_values, detect_tasks, group_order
from facefair.robustness.config import CLEAN, COLUMNS
from facefair.robustness.reframe import PREFIX as REFRAME_PREFIX

#: Gaps of the audit reported per condition (its definitions: docs/audit.md).
GAP_METRICS = ("degree_of_bias", "accuracy_difference", "worst_group_accuracy", "mae_difference",
               "worst_group_mae")
#: The group-level figure of each kind of task.
HEADLINE = {"classification": "accuracy", "regression": "mae"}
DROP = {"classification": "accuracy_drop", "regression": "mae_increase"}
#: Group name of gap rows that describe no single group.
GAP_GROUP = "(gap)"


def _row(task, corruption, severity, attribute, group, metric, value, low=np.nan, high=np.nan, n=0,
         flagged=False) -> dict:
    return {"task": task, "corruption": corruption, "severity": float(severity), "attribute": attribute,
            "group": group, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high),
            "n": int(n), "flagged": bool(flagged)}


def condition_rows(frame: pd.DataFrame, audit_config: AuditConfig, corruption: str, severity: float,
                   source: str = "<DataFrame>"):
    """(rows, audit): the audit's accuracy/MAE per group and its gaps, plus coverage, for one condition.
    The probability columns are left out of the audit: accuracy and MAE do not use them, and the
    ROC-AUC/ECE they would add cost ~40% of the time over fifty-odd conditions (``facefair audit``
    on the CSV gives those)."""
    audit = audit_predictions(frame[[c for c in frame.columns if "_prob_" not in c]], audit_config, source)
    rows = []
    kinds = {t.name: t.kind for t in audit.tasks}
    gm = audit.group_metrics
    for r in gm[gm["class"].isna()].itertuples():
        if r.metric == HEADLINE[kinds[r.task]]:
            rows.append(_row(r.task, corruption, severity, r.attribute, r.group, r.metric, r.value, r.ci_low,
                             r.ci_high, r.n, r.flagged))
    gaps = audit.gaps
    for r in gaps[gaps["class"].isna() & gaps.metric.isin(GAP_METRICS)].itertuples():
        group = r.worst_group if r.metric.startswith("worst_group") and isinstance(r.worst_group, str) else GAP_GROUP
        rows.append(_row(r.task, corruption, severity, r.attribute, group, r.metric, r.value, r.ci_low, r.ci_high,
                         r.n_groups))
    rows += _coverage_rows(frame, audit_config, corruption, severity)
    return rows, audit


def _groups(frame: pd.DataFrame, audit_config: AuditConfig) -> dict[str, np.ndarray]:
    notes: list[str] = []
    groups = {OVERALL: np.full(len(frame), ALL, dtype=object)}
    groups.update(attribute_values(frame, audit_config.attributes, audit_config.intersections, notes))
    return groups


def _coverage_rows(frame, audit_config, corruption, severity) -> list[dict]:
    predicted = frame[[c for c in frame.columns if c.endswith("_pred")]].notna().any(axis=1).to_numpy()
    if predicted.all() and not corruption.startswith(REFRAME_PREFIX):
        return []  # every face predicted: nothing to say (re-framing always says how many it found)
    rows = []
    for attribute, values in _groups(frame, audit_config).items():
        known = np.array([v is not None for v in values])
        for group in group_order(attribute, list(pd.unique(values[known]))):
            member = values == group
            n = int(member.sum())
            low, high = _mean_interval(predicted[member].astype(float), audit_config, "coverage", corruption,
                                       attribute, str(group))
            rows.append(_row("all", corruption, severity, attribute, group, "coverage",
                             predicted[member].mean(), low, high, n, n < audit_config.min_group_size))
    return rows


def _mean_interval(values: np.ndarray, audit_config: AuditConfig, *names: str) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (rows resampled, seeded by names)."""
    if audit_config.n_boot == 0 or len(values) == 0:
        return np.nan, np.nan
    rng = B.stream(audit_config.seed, *names)
    replicates = np.concatenate([w @ values / len(values) for w in B.weight_chunks(rng, len(values),
                                                                                     audit_config.n_boot)])
    low, high = B.percentile_interval(replicates[:, None], audit_config.ci_level)
    return float(low[0]), float(high[0])


def _scores(frame: pd.DataFrame, audit_config: AuditConfig) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Per task: kind, per-row score (1 correct / 0 wrong; absolute error in years) and validity,
    read through the audit's own task parsing (label spellings normalised the same way)."""
    out = {}
    for task in detect_tasks(frame, audit_config.tasks, audit_config.positive_classes, []):
        if task.kind == "classification":
            score = np.array([t == p for t, p in zip(task.y_true, task.y_pred)], dtype=float)
        else:
            score = np.abs(task.y_pred - task.y_true)
        out[task.name] = (task.kind, score, task.valid)
    return out


def drop_rows(clean: pd.DataFrame, corrupted: pd.DataFrame, audit_config: AuditConfig, corruption: str,
              severity: float) -> list[dict]:
    """Paired change against clean, per task and group (positive = worse)."""
    if len(clean) != len(corrupted) or not (clean["path"].to_numpy() == corrupted["path"].to_numpy()).all():
        raise ValueError(f"{corruption} {severity:g}: its predictions are not on the clean rows in the same order")
    before, after = _scores(clean, audit_config), _scores(corrupted, audit_config)
    rows = []
    for task, (kind, clean_score, clean_valid) in before.items():
        if task not in after:
            continue
        _, score, valid = after[task]
        both = clean_valid & valid
        # accuracy falls when correct answers are lost; MAE rises when errors grow
        change = clean_score - score if kind == "classification" else score - clean_score
        for attribute, values in _groups(clean, audit_config).items():
            known = np.array([v is not None for v in values]) & both
            for group in group_order(attribute, list(pd.unique(values[known]))):
                member = known & (values == group)
                diff = change[member]
                low, high = _mean_interval(diff, audit_config, "drop", task, attribute, str(group))
                rows.append(_row(task, corruption, severity, attribute, group, DROP[kind], diff.mean(), low, high,
                                 len(diff), len(diff) < audit_config.min_group_size))
    return rows


def fastest_rows(clean_audit, drops: list[dict], corruption: str, severity: float) -> list[dict]:
    """Per task and attribute: which judged group loses most, and whether it is the clean worst."""
    rows = []
    frame = pd.DataFrame(drops, columns=COLUMNS)
    frame = frame[(frame.attribute != OVERALL) & ~frame.flagged]
    gaps = clean_audit.gaps
    for (task, attribute), part in frame.groupby(["task", "attribute"], sort=False):
        if len(part) < 2 or part["value"].isna().all():
            continue
        top = part.loc[part["value"].idxmax()]
        rows.append(_row(task, corruption, severity, attribute, top.group, "largest_drop", top.value, top.ci_low,
                         top.ci_high, top.n))
        worst = gaps[(gaps.task == task) & (gaps.attribute == attribute) & gaps["class"].isna()
                     & gaps.metric.isin(["worst_group_accuracy", "worst_group_mae"])]
        if len(worst) and isinstance(worst.iloc[0].worst_group, str):
            clean_worst = worst.iloc[0].worst_group
            rows.append(_row(task, corruption, severity, attribute, clean_worst, "worst_group_falls_fastest",
                             float(clean_worst == top.group), n=len(part)))
    return rows


def read_condition(path: str | Path) -> tuple[pd.DataFrame, str, str, float]:
    """A predictions CSV of one condition, read as the audit reads any CSV, with its condition
    taken from its ``corruption``/``severity`` columns (or from the name ``<corruption>-<severity>.csv``)."""
    frame, source = load_predictions(path)
    if "corruption" in frame and frame["corruption"].notna().any():
        corruption = str(frame["corruption"].dropna().iloc[0])
        severity = float(frame["severity"].dropna().iloc[0]) if "severity" in frame else 0.0
    else:
        stem = Path(path).stem
        corruption, _, level = stem.rpartition("-") if stem != CLEAN else (CLEAN, "", "0")
        try:
            severity = float(level)
        except ValueError:
            raise ValueError(f"{path}: no corruption/severity columns and the name is not <corruption>-<severity>.csv") \
                from None
    return frame, source, corruption, severity


def robustness_table(paths: Iterable[str | Path], audit_config: AuditConfig) -> pd.DataFrame:
    """Audit every condition's predictions CSV (one of them ``clean``) into the tidy table."""
    loaded = [read_condition(p) for p in paths]
    clean = [item for item in loaded if item[2] == CLEAN]
    if len(clean) != 1:
        raise ValueError(f"need exactly one clean predictions CSV among the conditions, found {len(clean)}")
    clean_frame, clean_source, _, _ = clean[0]
    rows, clean_audit = condition_rows(clean_frame, audit_config, CLEAN, 0, clean_source)
    for frame, source, corruption, severity in loaded:
        if corruption == CLEAN:
            continue
        condition, _ = condition_rows(frame, audit_config, corruption, severity, source)
        drops = drop_rows(clean_frame, frame, audit_config, corruption, severity)
        rows += condition + drops + fastest_rows(clean_audit, drops, corruption, severity)
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_table(table: pd.DataFrame, attribute: str = "race", severity: Optional[float] = None) -> pd.DataFrame:
    """One row per (task, condition): overall figure, worst group and degree of bias on
    ``attribute``, the group that drops most and whether it is the clean worst."""
    t = table
    if severity is not None:
        t = t[(t.severity == severity) | (t.corruption == CLEAN) | t.corruption.str.startswith(REFRAME_PREFIX)]
    out = []
    for (task, corruption, level), part in t[t.task != "all"].groupby(["task", "corruption", "severity"], sort=False):
        def pick(metric, attr=attribute):
            rows = part[(part.metric == metric) & (part.attribute == attr)]
            return rows.iloc[0] if len(rows) else None
        overall = pick("accuracy", OVERALL)
        if overall is None:
            overall = pick("mae", OVERALL)
        worst = pick("worst_group_accuracy") if pick("worst_group_accuracy") is not None else pick("worst_group_mae")
        bias, fastest = pick("degree_of_bias"), pick("worst_group_falls_fastest")
        drop = pick(DROP["regression"] if overall is not None and overall.metric == "mae" else DROP["classification"],
                    OVERALL)
        largest = pick("largest_drop")
        out.append({"task": task, "corruption": corruption, "severity": level,
                    "overall": None if overall is None else overall.value,
                    "overall_drop": None if drop is None else drop.value,
                    "worst_group": None if worst is None else worst.group,
                    "worst_value": None if worst is None else worst.value,
                    "degree_of_bias": None if bias is None else bias.value,
                    "largest_drop_group": None if largest is None else largest.group,
                    "largest_drop": None if largest is None else largest.value,
                    "worst_falls_fastest": None if fastest is None else bool(fastest.value)})
    return pd.DataFrame(out)
