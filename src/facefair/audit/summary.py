"""The one-paragraph plain-language summary of the largest gaps."""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from facefair.audit.groups import SEPARATOR

TASK_LABELS = {"gender": "gender classification", "race": "race classification",
               "age_group": "age-group classification", "age": "exact-age estimation"}
ATTRIBUTE_LABELS = {"race": "race", "gender": "gender", "age_group": "age group"}


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, f"the {task} task")


def attribute_label(attribute: str) -> str:
    return " × ".join(ATTRIBUTE_LABELS.get(a, a) for a in attribute.split(SEPARATOR))


def group_label(group: str) -> str:
    return group.replace(SEPARATOR, " / ")


def _first(groups: str) -> str:
    """Gaps name every group tied at an end (", "-joined); any one of them has the value."""
    return groups.split(", ")[0]


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _ci(row: pd.Series, fmt=_pct) -> str:
    n = int(row.support) if "support" in row and not pd.isna(row.support) else int(row.n)
    if math.isnan(row.ci_low) or math.isnan(row.ci_high):
        return f"n={n}"
    return f"CI {fmt(row.ci_low)}–{fmt(row.ci_high)}, n={n}"


def _overlap(a: pd.Series, b: pd.Series) -> Optional[bool]:
    if any(math.isnan(v) for v in (a.ci_low, a.ci_high, b.ci_low, b.ci_high)):
        return None
    return not (a.ci_high < b.ci_low or b.ci_high < a.ci_low)


def _noise_clause(a: pd.Series, b: pd.Series, level: str) -> str:
    overlap = _overlap(a, b)
    if overlap is None:
        return ""
    return f" (their {level} intervals do not overlap)" if not overlap else \
        f" (their {level} intervals overlap, so part of this gap may be sampling noise)"


def _complete(rows: pd.DataFrame) -> pd.DataFrame:
    """Gaps that lost a thin cell are over fewer cells than they should be: never "the largest"."""
    return rows[rows.complete.astype(bool)] if "complete" in rows else rows


def _largest(gaps: pd.DataFrame, task: str, metric: str, exclude_own: bool = False) -> Optional[pd.Series]:
    rows = gaps[(gaps.task == task) & (gaps.metric == metric) & gaps["class"].isna() & gaps.value.notna()]
    if exclude_own:
        rows = rows[rows.attribute.map(lambda a: task not in a.split(SEPARATOR)).astype(bool)]
    rows = _complete(rows[rows.worst_group.notna() & rows.best_group.notna()])
    if rows.empty:
        return None
    return rows.loc[rows.value.idxmax()]


def _tie_sentence(result, task: str, metric: str, fmt) -> list[str]:
    """When no attribute separates the groups at all, say so (instead of "X against X")."""
    gaps = result.gaps
    rows = gaps[(gaps.task == task) & (gaps.metric == metric) & gaps["class"].isna() & (gaps.value == 0)
                & (gaps.n_groups >= 2)]
    if rows.empty:
        return []
    first = rows.iloc[0]
    basis = "accuracy" if metric == "accuracy_difference" else "mae"
    gm = result.group_metrics
    hit = gm[(gm.task == task) & (gm.attribute == first.attribute) & (gm.metric == basis) & gm["class"].isna()
             & ~gm.flagged]
    what = "accuracy" if basis == "accuracy" else "the mean absolute error"
    return [f"For {task_label(task)} {what} is the same in every {attribute_label(first.attribute)} group that "
            f"can be judged ({fmt(hit.value.iloc[0]) if len(hit) else 'n/a'}): no group fares worse."]


def _incomplete_sentence(result) -> list[str]:
    gaps = result.gaps
    if "complete" not in gaps:
        return []
    rows = gaps[~gaps.complete.astype(bool) & gaps["class"].isna()]
    if rows.empty:
        return []
    shown = [f"{r.metric.replace('_', ' ')} of {task_label(r.task)} across {attribute_label(r.attribute)} "
             f"(left out: {r.excluded_cells})" for r in rows.head(3).itertuples()]
    more = f" and {len(rows) - 3} more (see gaps.csv, complete = False)" if len(rows) > 3 else ""
    return [f"Not judged in full, because an error rate rests on fewer than {result.config.min_group_size} faces: "
            + "; ".join(shown) + more + ". Those gaps are computed over the remaining cells only and are not "
            "ranked here."]


def plain_summary(result) -> str:
    level = f"{result.config.ci_level:.0%}"
    sentences = []
    gaps = result.gaps
    for info in result.tasks:
        if info.kind == "classification":
            gap = _largest(gaps, info.name, "accuracy_difference")
            if gap is None:
                sentences += _tie_sentence(result, info.name, "accuracy_difference", _pct)
                continue
            worst = result.metric(info.name, gap.attribute, _first(gap.worst_group), "accuracy")
            best = result.metric(info.name, gap.attribute, _first(gap.best_group), "accuracy")
            sentences.append(
                f"For {task_label(info.name)} the largest accuracy gap is across {attribute_label(gap.attribute)}: "
                f"{group_label(gap.worst_group)} faces are classified correctly {_pct(worst.value)} of the time "
                f"({_ci(worst)}) against {_pct(best.value)} for {group_label(gap.best_group)} faces ({_ci(best)}), "
                f"a gap of {100 * gap.value:.1f} points{_noise_clause(worst, best, level)}.")
        else:
            gap = _largest(gaps, info.name, "mae_difference")
            if gap is None:
                sentences += _tie_sentence(result, info.name, "mae_difference", lambda x: f"{x:.1f} years")
                continue
            worst = result.metric(info.name, gap.attribute, _first(gap.worst_group), "mae")
            best = result.metric(info.name, gap.attribute, _first(gap.best_group), "mae")
            years = lambda x: f"{x:.1f}"  # noqa: E731
            sentences.append(
                f"Exact-age error differs most across {attribute_label(gap.attribute)}: the mean absolute error is "
                f"{worst.value:.1f} years for {group_label(gap.worst_group)} ({_ci(worst, years)}) against "
                f"{best.value:.1f} for {group_label(gap.best_group)} ({_ci(best, years)})"
                f"{_noise_clause(worst, best, level)}.")
    sentences += _gender_error_sentence(result, level)
    eod = _complete(gaps[(gaps.metric == "equalized_odds_difference") & gaps.value.notna()])
    if not eod.empty:
        top = eod.loc[eod.value.idxmax()]
        sentences.append(f"The largest equalized-odds difference is {top.value:.2f} ({task_label(top.task)} across "
                         f"{attribute_label(top.attribute)}).")
    sentences += _incomplete_sentence(result)
    flagged = result.group_metrics[result.group_metrics.flagged][["task", "attribute", "group"]].drop_duplicates()
    if len(flagged):
        sentences.append(f"{len(flagged)} task/group combinations have fewer than {result.config.min_group_size} "
                         "labelled faces: they are shown in the tables, marked too small to judge, and left out "
                         "of these gaps.")
    if not any(s for s in sentences if "gap" in s or "differs" in s):
        sentences.insert(0, f"No gap could be judged: no attribute has two groups with at least "
                            f"{result.config.min_group_size} labelled faces.")
    return " ".join(sentences)


def _gender_error_sentence(result, level: str) -> list[str]:
    """Which kind of gender error (women read as men, or men as women) varies most, and where."""
    try:
        info = result.task("gender")
    except KeyError:
        return []
    if info.positive_class != "Female":
        return []
    candidates = [g for g in (_largest(result.gaps, "gender", m, exclude_own=True) for m in
                              ("fnr_difference", "fpr_difference")) if g is not None]
    if not candidates:
        return []
    gap = max(candidates, key=lambda g: g.value)
    metric = gap.metric.split("_")[0]
    worst = result.metric("gender", gap.attribute, _first(gap.worst_group), metric)
    best = result.metric("gender", gap.attribute, _first(gap.best_group), metric)
    who = "women are predicted male" if metric == "fnr" else "men are predicted female"
    return [f"Among gender errors, the rate at which {who} ({metric.upper()}) varies most across "
            f"{attribute_label(gap.attribute)}: {_pct(worst.value)} for {group_label(gap.worst_group)} "
            f"({_ci(worst)}) against {_pct(best.value)} for {group_label(gap.best_group)} ({_ci(best)})"
            f"{_noise_clause(worst, best, level)}."]
