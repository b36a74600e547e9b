"""compare.html: significant differences first, a Pareto table per task, then every metric with
the methods side by side (the table is ``compare.compare_runs``'s)."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from facefair import pages
from facefair.audit.compare import ALPHA, points
from facefair.audit.config import OVERALL, AuditConfig
from facefair.audit.summary import attribute_label, task_label


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    scale, unit = points(metric)
    return f"{scale * value:.1f}" if unit == " points" else f"{value:.2f}"


def render_compare_html(table: pd.DataFrame, config: AuditConfig) -> str:
    reference = table.attrs.get("reference", table.reference.iloc[0] if len(table) else "")
    runs = table.attrs.get("runs", {})
    run_list = "".join(f"<li><b>{escape(k)}</b>{' (reference)' if k == reference else ''}: {len(v)} run(s): "
                       f"{escape(', '.join(v))}</li>" for k, v in runs.items())
    significant = table[table.significant.astype(bool)]
    verdicts = "".join(f"<li class='{escape(str(r.direction))}'>{escape(str(r.verdict))}</li>"
                       for r in significant.itertuples()) or "<li>No difference is significant after Holm.</li>"
    sections = []
    method_rank = {m: i for i, m in enumerate(dict.fromkeys([reference, *table.method]))}
    for task, part in table.groupby("task", sort=False):
        # Each metric's methods side by side (reference first): the comparison is read row by row.
        attribute_rank = {a: i for i, a in enumerate(dict.fromkeys(part.attribute))}
        metric_rank = {m: i for i, m in enumerate(dict.fromkeys(part.metric))}
        part = part.assign(_a=part.attribute.map(attribute_rank), _m=part.metric.map(metric_rank),
                           _r=part.method.map(method_rank)).sort_values(["_a", "_m", "_r"], kind="stable")
        # A gap no method has (gender FPR across gender groups) is only noise in the table.
        defined = part.groupby(["attribute", "metric"]).value.transform(lambda v: v.notna().any())
        part = part[defined.astype(bool)]
        body = []
        for r in part.itertuples():
            seeds = "" if r.n_runs == 1 else (f"<br><span class='ci'>seeds: sd {_fmt(r.seed_std, r.metric)}, "
                                              f"{_fmt(r.seed_min, r.metric)}–{_fmt(r.seed_max, r.metric)}</span>")
            ci = "" if pd.isna(r.ci_low) else f"<br><span class='ci'>[{_fmt(r.ci_low, r.metric)}, " \
                                                f"{_fmt(r.ci_high, r.metric)}]</span>"
            diff = "" if pd.isna(r.difference) else f"{'+' if r.difference >= 0 else ''}{_fmt(r.difference, r.metric)}"
            p = "" if pd.isna(r.p_value) else f"{r.p_value:.2g}<br><span class='ci'>Holm {r.p_holm:.2g}</span>"
            cls = "" if r.method == reference else ("sig-" + str(r.direction) if r.significant else "")
            word = "reference" if r.method == reference else ("significant, " + str(r.direction) if r.significant
                                                             else ("not significant" if not pd.isna(r.p_value) else ""))
            if r.method != reference and r.significant and r.within_seed_noise:
                word += " (within seed spread)"
            where = "overall" if r.attribute == OVERALL else attribute_label(r.attribute)
            body.append(f"<tr class='{cls}'><td class='l'>{escape(where)}</td><td class='l'>{escape(r.metric)}"
                        f"{'' if r.higher_is_better else ' ↓'}</td><td class='l'>{escape(str(r.method))}</td>"
                        f"<td>{r.n_runs}</td><td>{_fmt(r.value, r.metric)}{seeds}</td><td>{diff}{ci}</td>"
                        f"<td>{escape(str(r.test) if not pd.isna(r.test) else '')}</td><td>{p}</td>"
                        f"<td class='l'>{escape(word)}</td></tr>")
        pareto = part[part.pareto.fillna("") != ""].drop_duplicates(["attribute", "method"])
        pareto_rows = "".join(
            f"<tr><td class='l'>{escape(attribute_label(a))}</td>" + "".join(
                f"<td class='l'>{escape(str(g[g.method == m].pareto.iloc[0]) if (g.method == m).any() else '–')}</td>"
                for m in method_rank) + "</tr>" for a, g in pareto.groupby("attribute", sort=False))
        pareto_table = "" if not pareto_rows else (
            "<h3>Pareto (overall performance against the attribute's fairness gap, from the paired results)</h3>"
            "<table><thead><tr><th class='l'>attribute</th>" + "".join(f"<th class='l'>{escape(m)}</th>"
                                                                    for m in method_rank)
            + f"</tr></thead><tbody>{pareto_rows}</tbody></table>")
        sections.append(f"<h2>{escape(task_label(task).capitalize())}</h2>{pareto_table}<h3>Every metric and gap</h3>"
                        "<table><thead><tr><th class='l'>attribute</th><th class='l'>metric</th><th class='l'>method"
                        f"</th><th>runs</th><th>value</th><th>difference vs {escape(reference)} "
                        f"[{config.ci_level:.0%} paired CI]</th><th>test</th><th>p</th><th class='l'>verdict</th>"
                        f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    n_rows = int(table.n_rows.iloc[0]) if len(table) else 0
    return pages.document("facefair paired comparison", f"""<h1>Paired comparison against {escape(reference)}</h1>
<p class="meta">{n_rows} test rows, the same for every run (matched by image path, or by path inside the data folder when
runs read the data from different places: see Notes). Every run is scored on the same
{config.n_boot} bootstrap resamples of those rows (seed {config.seed}), so each difference has its own paired
{config.ci_level:.0%} interval. Overall accuracy with one run per side: exact McNemar test on the rows where the two
runs disagree; everything else: two-sided p-value from the paired bootstrap's standard error. Holm correction over
all {int(table.p_value.notna().sum())} tested differences; "significant" means Holm-adjusted p &lt; {ALPHA}. Several seeds per method: the value is the
mean over seeds (their sd and min–max below it), the paired interval is that of the seed-averaged difference, and a
difference smaller than the seed-to-seed sd is marked "within seed spread". Values and differences are in points
(x100) except ages (years); ↓ marks metrics where lower is better. Pareto: dominated only by a method significantly
better on one axis and not significantly worse on the other, where significant means Holm-adjusted p &lt; {ALPHA}
over every pairwise test of the Pareto axes (all pairs of methods, both axes). Groups with fewer than {config.min_group_size} rows and
thinner error-rate cells are left out of the gaps, as in the audit.</p>
<h3>Runs</h3><ul>{run_list}</ul>
<h2>Significant differences</h2><ul>{verdicts}</ul>
{''.join(sections)}
{pages.notes(table.attrs.get("notes", []))}""")


__all__ = ["render_compare_html"]
