"""transfer.html: the cross-dataset audit as one self-contained page (no script, no external file)."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from facefair import pages
from facefair.audit.config import OVERALL
from facefair.audit.report_html import fmt
from facefair.audit.summary import attribute_label, group_label


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _metric_key(metric: str) -> str:
    return "mae" if metric == "mae" else "accuracy"


def _value(value, low, high, metric: str) -> str:
    key = _metric_key(metric)
    ci = "" if math.isnan(_num(low)) or math.isnan(_num(high)) else \
        f"<br><span class='ci'>{fmt(_num(low), key)}–{fmt(_num(high), key)}</span>"
    return f"{fmt(_num(value), key)}{ci}"


def _change(row: dict) -> str:
    change = _num(row["change"])
    if math.isnan(change):
        return "–"
    worse = change > 0 if row["metric"] == "mae" else change < 0
    low, high = _num(row["change_low"]), _num(row["change_high"])
    clear = not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)
    css = ("bad" if worse else "good") if clear else ""
    sign = "+" if change >= 0 else ""
    ci = "" if math.isnan(low) else f"<br><span class='ci'>{low:+.3f}–{high:+.3f}</span>"
    text = f"{sign}{change:.2f}" if row["metric"] == "mae" else f"{sign}{change:.3f}"
    return f"<span class='{css}'>{text}</span>{ci}"


def _bar(row: dict) -> str:
    if row["metric"] == "mae":
        return ""
    parts = []
    for css, value in (("in", row["value_in"]), ("out", row["value_out"])):
        value = _num(value)
        if not math.isnan(value):
            parts.append(f"<span class='{css}' style='left:0;width:{max(0.0, min(1.0, value)) * 100:.0f}%'></span>")
    return f"<div class='bar'>{''.join(parts)}</div>"


def _group_table(groups: pd.DataFrame) -> str:
    head = ("<tr><th class='l'>by</th><th class='l'>group</th><th>n test</th><th>test split [CI]</th>"
            "<th>n here</th><th>this dataset [CI]</th><th>change [CI]</th><th class='l'>flag</th></tr>")
    body = []
    for row in groups.to_dict("records"):
        css = "collapsed" if row["collapsed"] else ("" if row["judged"] else "small")
        flag = (f"<b>collapsed</b>: {escape(row['reason'])}" if row["collapsed"]
                else ("" if row["judged"] else "too few to judge"))
        by = "all faces" if row["attribute"] == OVERALL else attribute_label(row["attribute"])
        body.append(f"<tr class='{css}'><td class='l'>{escape(by)}</td>"
                    f"<td class='l'>{escape(group_label(str(row['group'])))}{_bar(row)}</td>"
                    f"<td>{row['n_in']}</td><td>{_value(row['value_in'], row['ci_low_in'], row['ci_high_in'], row['metric'])}</td>"
                    f"<td>{row['n_out']}</td><td>{_value(row['value_out'], row['ci_low_out'], row['ci_high_out'], row['metric'])}</td>"
                    f"<td>{_change(row)}</td><td class='l'>{flag}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _confusion_table(confusion: pd.DataFrame, task: str) -> str:
    rows = confusion[confusion["task"] == task]
    if rows.empty:
        return ""
    classes = list(dict.fromkeys(rows["pred"]))
    head = "<tr><th class='l'>true group</th><th>n</th>" + "".join(f"<th>called {escape(c)}</th>" for c in classes) + "</tr>"
    body = []
    for group in dict.fromkeys(rows["group"]):
        out = rows[(rows["group"] == group) & (rows["side"] == "outside")].set_index("pred")
        inn = rows[(rows["group"] == group) & (rows["side"] == "inside")].set_index("pred")
        if out.empty:
            continue
        cells = []
        for cls in classes:
            share = _num(out["share"].get(cls))
            ref = _num(inn["share"].get(cls)) if not inn.empty else float("nan")
            css = "" if cls == group or math.isnan(share) or share < 0.2 else "bad"
            ref_text = "" if math.isnan(ref) else f"<br><span class='ci'>test {ref:.0%}</span>"
            cells.append(f"<td><span class='{css}'>{share:.0%}</span>{ref_text}</td>")
        body.append(f"<tr><td class='l'>{escape(str(group))}</td><td>{int(out['n'].iloc[0])}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _dataset_section(dataset: dict) -> str:
    groups: pd.DataFrame = dataset["groups"]
    findings = []
    collapsed = groups[groups["collapsed"]].assign(own=lambda f: f["metric"] != "recall").sort_values(["own", "change"])
    shown = 12
    for row in collapsed.head(shown).to_dict("records"):
        what = f"{row['task']} {row['metric']}" + ("" if row["metric"] == "recall"
                                                   else f" among {attribute_label(row['attribute'])} = "
                                                   f"{group_label(str(row['group']))}")
        who = f" of {row['group']}" if row["metric"] == "recall" else ""
        findings.append(f"<li class='bad'>{escape(what + who)}: {fmt(row['value_out'], 'accuracy')} here vs "
                        f"{fmt(row['value_in'], 'accuracy')} on the test split ({escape(row['reason'])})</li>")
    if len(collapsed) > shown:
        findings.append(f"<li class='bad'>... and {len(collapsed) - shown} more collapsed cells (red rows below)</li>")
    findings += [f"<li>{escape(s['text'])}</li>" for s in dataset["errors"] if s["share"] >= 0.1]
    for w in dataset["worst_groups"]:
        same = "the same group" if w["same"] else "<b>a different group</b>"
        findings.append(f"<li>Worst {escape(w['task'])} group by {escape(attribute_label(w['attribute']))}: "
                        f"{escape(group_label(w['worst_outside']))} here, {escape(group_label(w['worst_inside']))} on "
                        f"the test split ({same}).</li>")
    scheme = f"; race compared on {dataset['race_scheme']}" if dataset.get("race_scheme") else ""
    parts = [f"<h2 id='{escape(dataset['name'])}'>{escape(dataset['name'])}</h2>",
             f"<p class='meta'>{dataset['faces']} faces"
             + (f" ({escape(dataset['source'])})" if dataset.get("source") else "") + " against "
             f"{dataset['reference_faces']} faces of the run's test split{scheme}.</p>",
             "<div class='summary'><ul class='findings'>" + ("".join(findings) or "<li>No group collapsed.</li>")
             + "</ul></div>"]
    for task in dataset["tasks"]:
        rows = groups[groups["task"] == task]
        if rows.empty:
            continue
        metric = rows["metric"].iloc[-1]
        parts.append(f"<h3>{escape(task)}: {'MAE (years)' if metric == 'mae' else 'accuracy; recall where the group is a class'}</h3>")
        parts.append(_group_table(rows))
        confusion = _confusion_table(dataset["confusion"], task)
        if confusion:
            parts.append(f"<p class='meta'>Where each {escape(task)} group's faces go (row shares here; the test "
                         "split's in grey):</p>" + confusion)
    if dataset.get("notes"):
        parts.append("<ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in dataset["notes"]) + "</ul>")
    return "\n".join(parts)


def render_transfer_html(result: dict) -> str:
    datasets = result["datasets"]
    nav = " ".join(f"<a href='#{escape(d['name'])}'>{escape(d['name'])}</a>" for d in datasets)
    definitions = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in result["definitions"].items())
    body = "\n".join(_dataset_section(d) for d in datasets)
    return pages.document("facefair transfer audit", [
        pages.header("Transfer audit: other people's faces",
                     f"Reference: {escape(result['reference']['source'])} ({result['reference']['faces']} faces). "
                     "Bars: test split (light) and this dataset (dark)."),
        f"<nav>{nav}</nav>", body, f"<h2>Definitions</h2><dl>{definitions}</dl>"])
