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


METRIC_WORDS = {"accuracy_difference": "accuracy", "mae_difference": "mean absolute error",
                "fnr_difference": "FNR", "fpr_difference": "FPR",
                "equalized_odds_difference": "equalized-odds difference",
                "demographic_parity_difference": "demographic-parity difference"}
#: Which judged gaps the summary names first (the headline rates, then the error rates).
PRIORITY = list(METRIC_WORDS)
LISTED = 2


def _points(x: float) -> str:
    return f"{100 * x:.1f}"


def _complete(rows: pd.DataFrame) -> pd.DataFrame:
    """Gaps that lost a thin cell are over fewer cells than they should be: never "the largest"."""
    return rows[rows.complete.astype(bool)] if "complete" in rows else rows


def _judged(gaps: pd.DataFrame, verdict: Optional[str] = None) -> pd.DataFrame:
    from facefair.audit.verdicts import NO_DIFFERENCE, SIGNIFICANT
    wanted = [verdict] if verdict else [SIGNIFICANT, NO_DIFFERENCE]
    rows = gaps[gaps.metric.isin(PRIORITY) & gaps["class"].isna() & gaps.verdict.isin(wanted) & gaps.value.notna()]
    rank = rows.metric.map(PRIORITY.index)
    return rows.assign(_rank=rank).sort_values(["_rank", "value"], ascending=[True, False])


def describe_gap(result, gap: pd.Series, with_ci: bool = True) -> str:
    """One gap in words: the two groups it names, the difference and (``with_ci``) the difference's
    own CI.  That CI is not adjusted for the pair being the most extreme of many, so it is left
    out where the verdict is "no difference" (it would read as evidence the test does not give)."""
    what = METRIC_WORDS.get(gap.metric, gap.metric.replace("_", " "))
    where = f"{task_label(gap.task)} {what} across {attribute_label(gap.attribute)}"
    where = where.replace(" mean absolute error", " MAE")
    if gap.metric in ("equalized_odds_difference", "demographic_parity_difference") or pd.isna(gap.worst_group):
        years = gap.metric == "mae_difference"
        return f"{where}: {gap.value:.2f}" + (" years" if years else "")
    basis = {"accuracy_difference": "accuracy", "mae_difference": "mae", "fnr_difference": "fnr",
             "fpr_difference": "fpr"}[gap.metric]
    worst = result.metric(gap.task, gap.attribute, _first(gap.worst_group), basis)
    best = result.metric(gap.task, gap.attribute, _first(gap.best_group), basis)
    if basis == "mae":
        values = f"{worst.value:.1f} years for {group_label(_first(gap.worst_group))} vs {best.value:.1f} " \
                 f"for {group_label(_first(gap.best_group))}"
        size = f"{gap.value:.2f} years"
        ci = "" if pd.isna(gap.difference_ci_low) else \
            f", 95% CI {gap.difference_ci_low:.2f} to {gap.difference_ci_high:.2f}"
    else:
        values = f"{_pct(worst.value)} for {group_label(_first(gap.worst_group))} vs {_pct(best.value)} " \
                 f"for {group_label(_first(gap.best_group))}"
        size = f"{_points(gap.value)} points"
        ci = "" if pd.isna(gap.difference_ci_low) else \
            f", 95% CI {_points(gap.difference_ci_low)} to {_points(gap.difference_ci_high)}"
    return f"{where} ({values}: {size}{ci if with_ci else ''})"


def _significant_sentence(result, m: int) -> list[str]:
    from facefair.audit.verdicts import SIGNIFICANT
    rows = _judged(result.gaps, SIGNIFICANT)
    family = f"after correcting for {m} comparison{'s' if m != 1 else ''} (Holm, {result.config.alpha:.0%})"
    if rows.empty:
        return [f"No gap between groups is significant {family}."]
    listed = "; ".join(describe_gap(result, r) for _, r in rows.head(LISTED).iterrows())
    more = f"; {len(rows) - LISTED} more in the verdicts table" if len(rows) > LISTED else ""
    return [f"{len(rows)} of {m} tested gaps are significant {family}: {listed}{more}."]


def _uncertain_sentence(result) -> list[str]:
    from facefair.audit.verdicts import NO_DIFFERENCE
    rows = _complete(_judged(result.gaps, NO_DIFFERENCE))
    rows = rows[rows.metric.isin(["accuracy_difference", "mae_difference"])].sort_values("value", ascending=False)
    if rows.empty:
        return []
    top = rows.iloc[0]
    if top.value == 0:
        return _tie_sentence(result, top)
    mdd = "" if pd.isna(top.mdd) else \
        f"; detectable: {top.mdd:.1f} years" if top.metric == "mae_difference" else f"; detectable: {_points(top.mdd)} points"
    return [f"The largest other gap, {describe_gap(result, top, with_ci=False)}, is consistent with no difference (Holm p = "
            f"{top.p_holm:.2g}{mdd})."]


def _tie_sentence(result, gap: pd.Series) -> list[str]:
    """When no attribute separates the groups at all, say so (instead of "X against X")."""
    basis = "accuracy" if gap.metric == "accuracy_difference" else "mae"
    gm = result.group_metrics
    hit = gm[(gm.task == gap.task) & (gm.attribute == gap.attribute) & (gm.metric == basis) & gm["class"].isna()
             & ~gm.flagged]
    what = "accuracy" if basis == "accuracy" else "the mean absolute error"
    fmt = _pct if basis == "accuracy" else (lambda x: f"{x:.1f} years")
    return [f"For {task_label(gap.task)} {what} is the same in every {attribute_label(gap.attribute)} group that "
            f"can be judged ({fmt(hit.value.iloc[0]) if len(hit) else 'n/a'}): no group fares worse."]


def underpowered(result) -> pd.DataFrame:
    """Judged groups whose detectable accuracy (MAE) shift exceeds the gap that matters."""
    gm = result.group_metrics
    config = result.config
    rows = gm[gm["class"].isna() & ~gm.flagged & gm.mdd.notna() & (gm.attribute != "overall")]
    limit = rows.metric.map({"accuracy": config.meaningful_gap, "mae": config.meaningful_gap_years}).astype(float)
    return rows[limit.notna() & (rows.mdd.astype(float) > limit)]


def _power_sentence(result) -> list[str]:
    rows = underpowered(result)
    if rows.empty:
        return []
    config = result.config
    groups = rows.sort_values("n").drop_duplicates(["attribute", "group"])
    names = ", ".join(f"{group_label(r.group)} (n={int(r.n)})" for r in groups.head(LISTED).itertuples())
    more = ", ..." if len(groups) > LISTED else ""
    what = []
    if (rows.metric == "accuracy").any():
        what.append(f"a {100 * config.meaningful_gap:g}-point accuracy shift")
    if (rows.metric == "mae").any():
        what.append(f"a {config.meaningful_gap_years:g}-year MAE shift")
    return [f"{len(groups)} judged group{'s are' if len(groups) != 1 else ' is'} too small to detect "
            f"{' or '.join(what)} (80% power, after the correction), e.g. {names}{more}: there, no significant "
            "gap means too few faces (mdd in group_metrics.csv)."]


def _unjudged_sentence(result) -> list[str]:
    gm = result.group_metrics
    small = gm[gm.flagged & (gm.attribute != "overall")][["task", "attribute", "group"]].drop_duplicates()
    thin = gm[gm.thin_cell.astype(bool)] if "thin_cell" in gm else gm.iloc[:0]
    if small.empty and thin.empty:
        return []
    parts = []
    if len(small):
        parts.append(f"{len(small)} task/group pair{'s' if len(small) != 1 else ''}")
    if len(thin):
        parts.append(f"{len(thin)} error-rate cell{'s' if len(thin) != 1 else ''}")
    return [f"{' and '.join(parts).capitalize()} rest on fewer than {result.config.min_group_size} faces and are "
            "not judged (listed under “Not judged” in audit.html)."]


def plain_summary(result) -> str:
    """At most five sentences: what is significant, the largest gap that is not, who is too small
    to tell, and a pointer to what could not be judged."""
    m = int(getattr(result, "family_size", 0))
    if m == 0:
        sentences = [f"No gap could be judged: no attribute has two groups with at least "
                     f"{result.config.min_group_size} labelled faces."]
    else:
        sentences = _significant_sentence(result, m) + _uncertain_sentence(result)
    sentences += _power_sentence(result) + _unjudged_sentence(result)
    return " ".join(sentences)
