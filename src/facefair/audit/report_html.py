"""The self-contained HTML report (``facefair.pages``: figures inlined as PNG, no script, no external file)."""

from __future__ import annotations

import math
from html import escape
from typing import Optional

from facefair.audit import plots
from facefair.audit.config import OVERALL, AuditResult
from facefair.audit.groups import SEPARATOR
from facefair.audit.judge import TESTED
from facefair.audit.summary import attribute_label, group_label, task_label, underpowered
from facefair.audit.verdicts import NO_DIFFERENCE, SIGNIFICANT
from facefair.pages import document

GAP_ORDER = ["worst_group_accuracy", "accuracy_difference", "degree_of_bias", "accuracy_max_min_ratio",
             "skewed_error_ratio", "macro_f1_difference", "fpr_difference", "fnr_difference",
             "equalized_odds_difference", "demographic_parity_difference", "roc_auc_difference", "ece_difference",
             "worst_group_mae", "mae_difference", "mae_max_min_ratio", "mean_error_difference"]
COLUMNS = ["accuracy", "macro_f1", "fpr", "fnr", "selection_rate", "roc_auc", "ece", "mae", "mean_error"]
YEARS = {"mae", "mean_error", "worst_group_mae", "mae_difference", "mean_error_difference"}
RATIOS = {"accuracy_max_min_ratio", "skewed_error_ratio", "mae_max_min_ratio"}


def fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞"
    if metric in YEARS or metric in RATIOS:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(value: float, low: float, high: float, metric: str) -> str:
    ci = "" if any(isinstance(v, float) and math.isnan(v) for v in (low, high)) else \
        f"<br><span class='ci'>{fmt(low, metric)}–{fmt(high, metric)}</span>"
    return f"{fmt(value, metric)}{ci}"


def _value_cell(g, metric: str) -> str:
    """A group's value with its CI; a thin error-rate cell says on how few rows it rests, and a
    macro-F1 of a one-class group says it does not apply."""
    text = cell(g.value[metric], g.ci_low[metric], g.ci_high[metric], metric)
    if "thin_cell" in g and bool(g.thin_cell[metric]):
        text += (f"<br><span class='badge' title='rests on {int(g.support[metric])} rows: shown, but too thin to "
                 f"judge and left out of the gaps'>too thin: n={int(g.support[metric])}</span>")
    elif metric == "macro_f1" and math.isnan(g.value[metric]) and not math.isnan(g.value.get("accuracy", math.nan)):
        text = "<span title='one true class in this group: macro-F1 is not a fairness figure here'>n/a</span>"
    return text


def _table(header: list[str], rows: list[str], left: int = 1) -> str:
    head = "".join(f"<th class='l'>{h}</th>" if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _gap_table(result: AuditResult, task: str) -> str:
    gaps = result.gaps[(result.gaps.task == task) & result.gaps["class"].isna()]
    attributes = [a for a in result.attributes if (gaps.attribute == a).any()]
    if not attributes:
        return "<p>No gap: no sensitive attribute is available for this task.</p>"
    rows = []
    for metric in [m for m in GAP_ORDER if (gaps.metric == m).any()]:
        cells = []
        for attribute in attributes:
            hit = gaps[(gaps.metric == metric) & (gaps.attribute == attribute)]
            if hit.empty:
                cells.append("<td>–</td>")
                continue
            partial = "" if bool(hit.complete.iloc[0]) else (
                f"<span class='badge' title='{escape(str(hit.note.iloc[0]), quote=True)}'>incomplete</span>")
            cells.append(f"<td>{cell(hit.value.iloc[0], hit.ci_low.iloc[0], hit.ci_high.iloc[0], metric)}"
                         f"{partial}{_verdict_badge(hit.iloc[0])}</td>")
        tip = escape(result.definitions.get(metric, ""), quote=True)
        rows.append(f"<tr><td class='l' title='{tip}'>{escape(metric)}</td>{''.join(cells)}</tr>")
    first = gaps.drop_duplicates("attribute").set_index("attribute")
    compared = "".join(f"<td>{int(first.n_groups.get(a, 0))}</td>" for a in attributes)
    rows.append(f"<tr><td class='l'><i>groups compared</i></td>{compared}</tr>")
    def left_out(attribute: str) -> str:
        groups = [g for g in (first.excluded_groups.get(attribute) or "").split(", ") if g]
        return ", ".join(group_label(g) for g in groups) or "–"
    excluded = "".join(f"<td class='l'>{escape(left_out(a))}</td>" for a in attributes)
    rows.append(f"<tr><td class='l'><i>too small, left out</i></td>{excluded}</tr>")

    def thin(attribute: str) -> str:
        cells = gaps[(gaps.attribute == attribute) & (gaps.excluded_cells.fillna("") != "")].excluded_cells
        return ", ".join(dict.fromkeys(c for text in cells for c in text.split(", ") if c)) or "–"
    thin_cells = [thin(a) for a in attributes]
    if any(t != "–" for t in thin_cells):
        cells = "".join(f"<td class='l'>{escape(t)}</td>" for t in thin_cells)
        rows.append(f"<tr><td class='l'><i>error-rate cells too thin, left out (gaps marked incomplete)</i></td>"
                    f"{cells}</tr>")
    return _table(["gap"] + [escape(attribute_label(a)) for a in attributes], rows)


def _verdict_badge(gap) -> str:
    """Significant / n.s. next to a gap that has a test (its Holm-adjusted p-value on hover)."""
    verdict = gap.get("verdict") if hasattr(gap, "get") else None
    if verdict == SIGNIFICANT:
        return f"<br><span class='badge sig' title='Holm-adjusted p = {gap.p_holm:.2g} ({escape(gap.test)})'>" \
               "significant</span>"
    if verdict == NO_DIFFERENCE:
        return f"<br><span class='badge ns' title='Holm-adjusted p = {gap.p_holm:.2g} ({escape(gap.test)})'>" \
               "n.s.</span>"
    return ""


def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "<1e-300" if value < 1e-300 else f"{value:.2g}"


def _verdict_rows(result: AuditResult, rows) -> list[str]:
    out = []
    for _, g in rows.iterrows():
        years = g.metric == "mae_difference"
        scale, unit = (1, " y") if years else (100, " pts")
        diff_ci = "–" if math.isnan(g.difference_ci_low) else \
            f"{scale * g.difference_ci_low:.1f} to {scale * g.difference_ci_high:.1f}"
        pair = "–" if g.worst_group is None or (isinstance(g.worst_group, float)) else \
            f"{group_label(str(g.worst_group))} vs {group_label(str(g.best_group))}"
        mdd = "–" if math.isnan(g.mdd) else f"{scale * g.mdd:.1f}{unit}"
        value = f"{g.value:.2f}" if g.metric in ("equalized_odds_difference", "demographic_parity_difference") \
            else f"{scale * g.value:.1f}{unit}"
        badge = "sig" if g.verdict == SIGNIFICANT else "ns"
        incomplete = "" if bool(g.complete) else " <span class='badge'>incomplete</span>"
        out.append(f"<tr><td class='l'>{escape(task_label(g.task))}</td><td class='l'>"
                   f"{escape(attribute_label(g.attribute))}</td><td class='l'>{escape(g.metric)}{incomplete}</td>"
                   f"<td>{value}</td><td class='l'>{escape(pair)}</td><td>{diff_ci}</td><td>{_p(g.p_value)}</td>"
                   f"<td>{_p(g.p_holm)}</td><td class='l'><span class='badge {badge}' "
                   f"title='test: {escape(g.test, quote=True)}'>{escape(g.verdict)}</span></td><td>{mdd}</td></tr>")
    return out


VERDICT_HEADER = ["task", "across", "gap", "value", "worst vs best", "CI of that difference", "p", "Holm p",
                  "verdict", "detectable (80%)"]
#: Significant gaps shown before the collapsible full list.
SHOWN_SIGNIFICANT = 8


def _verdicts_section(result: AuditResult) -> str:
    """The family of tested gaps: significant ones shown, everything in a collapsible table."""
    gaps = result.gaps
    tested = gaps[gaps.metric.isin(TESTED) & gaps["class"].isna() & gaps.verdict.isin([SIGNIFICANT, NO_DIFFERENCE])]
    tested = tested.sort_values(["p_holm", "value"], ascending=[True, False])
    m = result.family_size
    intro = (f"<p class='meta'>Each gap below is judged by a test of equal rates across the groups that can be "
             f"judged (hover a verdict for its test; every test is in gaps.csv); Holm's correction runs over all {m} tests of this audit (every task, "
             f"attribute and intersection), family-wise error {result.config.alpha:.0%}. The CI is that of the "
             "difference between the two groups named, resampled as a difference; it is not widened for the pair "
             "being the most extreme of many, so judge a gap by its verdict, not by whether that CI holds 0. <i>Detectable</i>: the smallest "
             "shift of the smallest judged group's rate that the test finds with 80% power after the correction.</p>")
    significant = tested[tested.verdict == SIGNIFICANT]
    more = f"<p class='meta'>{len(significant) - SHOWN_SIGNIFICANT} more significant gaps in the full list " \
        "below.</p>" if len(significant) > SHOWN_SIGNIFICANT else ""
    shown = _table(VERDICT_HEADER, _verdict_rows(result, significant.head(SHOWN_SIGNIFICANT)), left=3) + more \
        if len(significant) else f"<p><b>No gap is significant after correcting for {m} comparisons.</b></p>"
    full = (f"<details><summary>All {len(tested)} tested gaps, by adjusted p-value</summary>"
            + _table(VERDICT_HEADER, _verdict_rows(result, tested), left=3) + "</details>")
    return "<h2 id='verdicts'>Verdicts</h2>" + intro + shown + full + _not_judged(result)


def _thin_label(row) -> str:
    """As the gaps name a thin cell: "FNR in Black (n=20)", "FNR of Others in Female (n=26)"."""
    rate = row.metric.split("_")[0].upper()
    what = f"{rate} of {row['class']}" if isinstance(row["class"], str) else rate
    return f"{what} in {group_label(row.group)} (n={int(row.support)})"


def _not_judged(result: AuditResult) -> str:
    gm = result.group_metrics
    small = gm[gm.flagged & (gm.attribute != OVERALL)].drop_duplicates(["task", "attribute", "group"])
    thin = gm[gm.thin_cell.astype(bool)]
    power = underpowered(result)
    if small.empty and thin.empty and power.empty:
        return ""
    items = [f"<li>{escape(task_label(r.task))}, {escape(attribute_label(r.attribute))}: "
             f"{escape(group_label(r.group))} (n={int(r.n)}) — too small, left out of every gap</li>"
             for r in small.itertuples()]
    items += [f"<li>{escape(task_label(r.task))}, {escape(attribute_label(r.attribute))}: "
              f"{escape(_thin_label(r))} — too thin, left out of the gaps</li>" for _, r in thin.iterrows()]
    limit = {"accuracy": f"{100 * result.config.meaningful_gap:g} points",
             "mae": f"{result.config.meaningful_gap_years:g} years"}
    items += [f"<li>{escape(task_label(r.task))}, {escape(attribute_label(r.attribute))}: "
              f"{escape(group_label(r.group))} (n={int(r.n)}) — judged, but a {r.metric} shift under "
              f"{(100 * r.mdd if r.metric == 'accuracy' else r.mdd):.1f} {'points' if r.metric == 'accuracy' else 'years'}"
              f" would likely go unseen (more than {limit[r.metric]})</li>" for r in power.itertuples()]
    return (f"<details><summary>Not judged, or too small to judge a gap that matters ({len(items)})</summary>"
            f"<ul class='notes'>{''.join(items)}</ul></details>")


def _group_table(result: AuditResult, task: str, attribute: str) -> str:
    gm = result.group_metrics
    part = gm[(gm.task == task) & (gm.attribute == attribute) & gm["class"].isna()]
    metrics = [m for m in COLUMNS if (part.metric == m).any()]
    rows = []
    for group in dict.fromkeys(part.group):
        g = part[part.group == group].set_index("metric")
        flagged = bool(g.flagged.iloc[0])
        badge = "<span class='badge'>too small to judge</span>" if flagged else ""
        cells = "".join(f"<td>{_value_cell(g, m)}</td>" for m in metrics)
        rows.append(f"<tr class='{'flagged' if flagged else ''}'><td class='l'>{escape(group_label(group))}{badge}"
                    f"</td><td>{int(g.n.iloc[0])}</td>{cells}</tr>")
    return _table(["group", "n"] + [escape(plots.METRIC_LABELS.get(m, m)) for m in metrics], rows)


def _per_class_table(result: AuditResult, task: str, attribute: str) -> str:
    gm = result.group_metrics
    part = gm[(gm.task == task) & (gm.attribute == attribute) & gm["class"].notna()]
    if part.empty:
        return ""
    metrics = list(dict.fromkeys(part.metric))
    rows = []
    for (group, cls), g in part.groupby(["group", "class"], sort=False):
        g = g.set_index("metric")
        cells = "".join(f"<td>{_value_cell(g, m)}</td>" for m in metrics)
        rows.append(f"<tr class='{'flagged' if bool(g.flagged.iloc[0]) else ''}'><td class='l'>"
                    f"{escape(group_label(group))}</td><td class='l'>{escape(str(cls))}</td>{cells}</tr>")
    where = "overall" if attribute == OVERALL else f"by {attribute_label(attribute)}"
    return (f"<details><summary>One-vs-rest rates per class, {escape(where)}</summary>"
            + _table(["group", "class"] + metrics, rows, left=2) + "</details>")


def _img(uri: Optional[str], alt: str) -> str:
    return f"<img src='{uri}' alt='{escape(alt, quote=True)}'>" if uri else ""


def _figure_verdicts(result: AuditResult, task: str, attribute: str, metrics) -> dict[str, str]:
    gaps = result.gaps
    out = {}
    for metric in metrics:
        hit = gaps[(gaps.task == task) & (gaps.attribute == attribute) & (gaps.metric == f"{metric}_difference")
                   & gaps["class"].isna()]
        if len(hit) and hit.verdict.iloc[0] in (SIGNIFICANT, NO_DIFFERENCE):
            verdict = hit.verdict.iloc[0]
            out[metric] = "significant" if verdict == SIGNIFICANT else "n.s."
    return out


def _task_section(result: AuditResult, info, extra: str = "") -> str:
    gm = result.group_metrics
    name = info.name
    attributes = [a for a in result.attributes if ((gm.task == name) & (gm.attribute == a)).any()]
    parts = [f"<h2 id='task-{escape(name)}'>{escape(task_label(name).capitalize())}</h2>"]
    headline = "accuracy" if info.kind == "classification" else "mae"
    overall = gm[(gm.task == name) & (gm.attribute == OVERALL) & (gm.metric == headline)]
    desc = f"{info.n:,} labelled rows"
    if info.kind == "classification":
        desc += f"; classes: {escape(', '.join(info.classes))}"
        if info.positive_class:
            desc += f"; positive class for FPR/FNR/selection rate: <b>{escape(info.positive_class)}</b>"
        if not info.has_probabilities:
            desc += "; <b>no probabilities in the table: calibration (ECE) and ROC-AUC are skipped</b>"
    if len(overall):
        o = overall.iloc[0]
        desc += (f". Overall {plots.METRIC_LABELS[headline]}: <b>{fmt(o.value, headline)}</b> "
                 f"<span class='ci'>({fmt(o.ci_low, headline)}–{fmt(o.ci_high, headline)})</span>")
    parts.append(f"<p>{desc}.</p>")
    parts.append("<h3>Gaps between groups</h3>" + _gap_table(result, name))
    parts.append("<h3>Per-group results</h3>")
    figures = [["accuracy"], ["fpr", "fnr"]] if info.kind == "classification" else [["mae"]]
    for metrics in figures:
        images = [_img(plots.group_dots(gm, name, metrics, a, result.config.min_group_size,
                                        _figure_verdicts(result, name, a, metrics)),
                       f"{name} {' and '.join(metrics)} by {a}") for a in attributes]
        parts.append(f"<div class='row'>{''.join(images)}</div>")
    for attribute in [OVERALL] + attributes:
        title = "Overall" if attribute == OVERALL else f"By {attribute_label(attribute)}"
        parts.append(f"<h4>{escape(title)}</h4>" + _group_table(result, name, attribute)
                     + _per_class_table(result, name, attribute))
    if info.kind == "classification":
        parts.append("<h3>Confusion matrices per group</h3><p class='meta'>Rows: true class; columns: predicted; "
                     "shade: share of the true class; * marks groups too small to judge.</p>")
        # Grouped by its own label a task's matrices have one row each; the overall matrix says more.
        shown = [OVERALL] + [a for a in attributes if SEPARATOR not in a and a != name]
        for attribute in shown:
            flagged = gm[(gm.task == name) & (gm.attribute == attribute)].drop_duplicates("group") \
                .set_index("group").flagged.to_dict()
            heading = "Overall" if attribute == OVERALL else f"By {attribute_label(attribute)}"
            parts.append(f"<h4>{escape(heading)}</h4>")
            parts.append(_img(plots.confusion_grid(result.confusion, name, attribute, info.classes, flagged),
                              f"{name} confusion matrices by {attribute}"))
        parts.append("<h3>Calibration</h3>")
        if info.has_probabilities:
            parts.append("<p class='meta'>Reliability curves of the predicted label (10 equal-width bins); the "
                         "dotted diagonal is perfect calibration. Per-group ECE is in the tables above.</p>")
            parts.append(_img(plots.reliability_panels(result.calibration, name, [OVERALL] + attributes),
                              f"{name} reliability curves"))
        else:
            parts.append("<p>Skipped: the table has no predicted probabilities for this task.</p>")
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def render_html(result: AuditResult, task_extras: Optional[dict[str, str]] = None) -> str:
    """The report; ``task_extras`` adds an HTML fragment at the end of a task's section (the
    gallery of confident errors, when the images are at hand)."""
    config = result.config
    tasks = ", ".join(t.name for t in result.tasks)
    nav = "".join(f"<a href='#task-{escape(t.name)}'>{escape(task_label(t.name))}</a>" for t in result.tasks)
    notes = "".join(f"<li>{escape(n)}</li>" for n in result.notes) or "<li>None.</li>"
    definitions = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in result.definitions.items())
    body = "\n".join(_task_section(result, info, (task_extras or {}).get(info.name, "")) for info in result.tasks)
    return document("facefair fairness audit", f"""<h1>Fairness audit</h1>
<p class="meta">Source: {escape(result.source)} &middot; {result.n_rows:,} rows &middot; tasks: {escape(tasks)}
&middot; attributes: {escape(', '.join(attribute_label(a) for a in result.attributes) or 'none')}<br>
{config.ci_level:.0%} bootstrap intervals from {config.n_boot} resamples of each group's cell counts (seed
{config.seed}) &middot; verdicts: Holm over {result.family_size} tests &middot; groups with
fewer than {config.min_group_size} labelled rows are marked <span class="badge">too small to judge</span> and left
out of every gap.</p>
<h2>Summary</h2>
<p class="summary">{escape(result.summary)}</p>
<nav><a href='#verdicts'>verdicts</a>{nav}</nav>
{_verdicts_section(result)}
<h3>Notes</h3><ul class="notes">{notes}</ul>
{body}
<h2>Definitions</h2>
<dl>{definitions}</dl>""")


def write_html(result: AuditResult, path) -> None:
    from pathlib import Path
    Path(path).write_text(render_html(result), encoding="utf-8")


__all__ = ["render_html", "write_html", "fmt", "cell"]
