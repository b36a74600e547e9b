"""robustness.html: one self-contained page (figures inlined as PNG) over the tidy table."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair import pages
from facefair.audit.config import OVERALL
from facefair.robustness.config import CLEAN
from facefair.robustness.reframe import PREFIX
from facefair.robustness.results import DROP, summary_table

ATTRIBUTES = ("race", "gender", "age_group", "race:gender")
TASK_LABELS = {"gender": "Gender", "race": "Race", "age_group": "Age group", "age": "Exact age"}


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value))):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.floating)):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _is_reframe(corruption: str) -> bool:
    return corruption.startswith(PREFIX)


def curves_figure(table: pd.DataFrame, task: str, attribute: str) -> str | None:
    """The curves (:func:`curves_plot`) as a PNG data URI, or None when there is nothing to draw."""
    fig = curves_plot(table, task, attribute)
    return None if fig is None else pages.figure_uri(fig, dpi=80)


def curves_plot(table: pd.DataFrame, task: str, attribute: str):
    """Metric vs severity, one panel per corruption, a line per group (dotted: too small to
    judge) with its bootstrap band; re-framing panels put the paddings on the x axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from facefair.audit.plots import COLORS
    metric = "mae" if task == "age" else "accuracy"
    rows = table[(table.task == task) & (table.attribute == attribute) & (table.metric == metric)]
    if rows.empty:
        return None
    clean = rows[rows.corruption == CLEAN]
    corruptions = [c for c in dict.fromkeys(rows.corruption) if c != CLEAN]
    if not corruptions:
        return None
    groups = list(dict.fromkeys(rows.group))
    cols = min(5, len(corruptions))
    nrows = math.ceil(len(corruptions) / cols)
    panels_height = 2.15 * nrows + 0.3
    fig = Figure(figsize=(2.55 * cols, panels_height))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharey=True, squeeze=False)).ravel()
    for ax, corruption in zip(axes, corruptions):
        part = pd.concat([clean, rows[rows.corruption == corruption]])
        levels = sorted(part.severity.unique())
        x_of = {level: i for i, level in enumerate(levels)}
        for g, group in enumerate(groups):
            line = part[part.group == group].sort_values("severity")
            if line.empty:
                continue
            x = line.severity.map(x_of).to_numpy()
            flagged = bool(line.flagged.any())
            ax.plot(x, line.value, color=COLORS[g % len(COLORS)], lw=1.6, marker="o", ms=2.5,
                    ls=":" if flagged else "-", label=group + (" (small)" if flagged else ""))
            if not flagged:
                ax.fill_between(x, line.ci_low, line.ci_high, color=COLORS[g % len(COLORS)], alpha=0.10, lw=0)
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels(["clean" if lv == 0 else f"{lv:g}" for lv in levels], fontsize=7)
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("padding" if _is_reframe(corruption) else "severity", fontsize=7)
        ax.grid(alpha=0.25)
    for ax in axes[len(corruptions):]:
        ax.set_visible(False)
    axes[0].set_ylabel("MAE (years)" if metric == "mae" else "accuracy", fontsize=8)
    legend_inches = _fitted_legend(fig, *axes[0].get_legend_handles_labels())
    height = panels_height + legend_inches
    fig.set_size_inches(2.55 * cols, height)
    fig.tight_layout(rect=(0, 0, 1, 1 - legend_inches / height))
    return fig


def _fitted_legend(fig, handles: list, labels: list) -> float:
    """A legend above the panels with as many columns as fit the figure's width, measured as
    drawn: label lengths vary too much ("Others" vs "Indian:Female (small)") for a fixed
    number per panel. Returns the height it needs, in inches."""
    renderer = fig.canvas.get_renderer()
    width = fig.bbox.width
    for ncol in range(min(len(labels), 6), 0, -1):
        legend = fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=7.5, frameon=False)
        extent = legend.get_window_extent(renderer)
        if extent.width <= 0.98 * width or ncol == 1:
            return extent.height / fig.dpi + 0.1
        legend.remove()
    return 0.0


def _scope(severity: Optional[float], reframed: bool) -> str:
    """Which conditions a summary shows: one corruption severity (None: no corruption was run),
    and every re-framing padding when there is re-framing."""
    parts = ([f"severity {severity:g}"] if severity is not None else []) + (["every re-framing"] if reframed else [])
    return " and ".join(parts)


def drop_table(table: pd.DataFrame, task: str, attribute: str, severity: Optional[float]) -> str:
    """Drop vs clean per group (columns) and condition (rows) at one severity, plus re-framing;
    the largest drop among the judged groups of each row is highlighted."""
    metric = DROP["regression" if task == "age" else "classification"]
    rows = table[(table.task == task) & (table.attribute == attribute) & (table.metric == metric)
                 & ((table.severity == severity) | table.corruption.map(_is_reframe))]
    if rows.empty:
        return ""
    groups = list(dict.fromkeys(rows.group))
    small = set(rows[rows.flagged].group)
    head = "".join(f"<th>{escape(g)}{' (small)' if g in small else ''}</th>" for g in groups)
    body = []
    for (corruption, level), part in rows.groupby(["corruption", "severity"], sort=False):
        part = part.set_index("group")
        judged = part[~part.flagged]["value"]
        top = judged.idxmax() if len(judged) and judged.notna().any() else None
        label = f"{corruption} (padding {level:g})" if _is_reframe(corruption) else corruption
        cells = []
        for g in groups:
            if g not in part.index:
                cells.append("<td>–</td>")
                continue
            r = part.loc[g]
            ci = f"<br><span class='ci'>{_fmt(r.ci_low)}–{_fmt(r.ci_high)}</span>" if not pd.isna(r.ci_low) else ""
            cells.append(f"<td class='{'hot' if g == top else ''}'>{_fmt(r.value)}{ci}</td>")
        body.append(f"<tr><td class='l'>{escape(label)}</td>{''.join(cells)}</tr>")
    what = "MAE increase (years)" if task == "age" else "accuracy drop"
    scope = _scope(severity, bool(rows.corruption.map(_is_reframe).any()))
    return (f"<p class='meta'>{what} vs clean by {escape(attribute)}, {scope}; "
            "positive = worse; paired bootstrap interval; red: the judged group that loses most.</p>"
            f"<table><tr><th class='l'>condition</th>{head}</tr>{''.join(body)}</table>")


def summary_html(summary: pd.DataFrame) -> str:
    head = ("<tr><th class='l'>condition</th><th>severity / padding</th><th>overall</th><th>overall drop</th>"
            "<th class='l'>worst race</th><th>its figure</th><th>degree of bias (race)</th>"
            "<th class='l'>race that drops most</th><th>its drop</th><th>clean-worst falls fastest</th></tr>")
    body = "".join(
        f"<tr><td class='l'>{escape(r.corruption)}</td><td>{_fmt(r.severity, 2)}</td><td>{_fmt(r.overall)}</td>"
        f"<td>{_fmt(r.overall_drop)}</td><td class='l'>{_fmt(r.worst_group)}</td><td>{_fmt(r.worst_value)}</td>"
        f"<td>{_fmt(r.degree_of_bias)}</td><td class='l'>{_fmt(r.largest_drop_group)}</td>"
        f"<td>{_fmt(r.largest_drop)}</td><td>{_fmt(r.worst_falls_fastest)}</td></tr>"
        for r in summary.itertuples())
    return f"<table>{head}{body}</table>"


def plain_summary(table: pd.DataFrame, severity: Optional[float]) -> list[str]:
    """A sentence per task: the clean figure, what hurts most, and whether the worst race falls fastest.
    ``severity`` None: only re-framing was run."""
    lines = []
    reframed = bool(table.corruption.map(_is_reframe).any())
    where = " and ".join(([f"at severity {severity:g}"] if severity is not None else [])
                         + (["under re-framing"] if reframed else []))
    for task in dict.fromkeys(table[table.task != "all"].task):
        s = summary_table(table[table.task == task], "race", severity)
        if s.empty:
            continue
        clean = s[s.corruption == CLEAN]
        others = s[(s.corruption != CLEAN) & s.overall_drop.notna()]
        if clean.empty or others.empty:
            continue
        unit = "years of MAE" if task == "age" else "accuracy points"
        scale = 1 if task == "age" else 100
        # only conditions that make the figure worse, as shown (a change that rounds to 0.0 or
        # improves it is not "hurting", whatever its rank)
        worst = others[(others.overall_drop * scale).round(1) > 0].sort_values("overall_drop", ascending=False).head(3)
        hurt = ", ".join(f"{r.corruption}{'' if _is_reframe(r.corruption) else f' {r.severity:g}'}"
                         f"{f' (padding {r.severity:g})' if _is_reframe(r.corruption) else ''}"
                         f" ({(r.overall_drop if task == 'age' else -r.overall_drop) * scale:+.1f})"
                         for r in worst.itertuples())
        judged = others[others.worst_falls_fastest.notna()]
        fastest = int(judged.worst_falls_fastest.astype(bool).sum())
        c = clean.iloc[0]
        lines.append(
            f"<b>{TASK_LABELS.get(task, task)}</b>: clean {_fmt(c.overall)}, worst race {_fmt(c.worst_group)} "
            f"({_fmt(c.worst_value)}). "
            + (f"Hurts most {where}: {hurt} {unit}. " if hurt else f"Nothing run {where} makes it worse. ")
            + f"The race that is worst on clean faces is also the one that drops most in {fastest} of "
            f"{len(judged)} conditions.")
    return lines


def write_html(result, config, path: Path, severity: float = 3) -> Path:
    """``severity``: the level the summary tables show (the highest run at or below it, when it was not run)."""
    table = result.table
    levels = sorted(s for s in table[~table.corruption.map(_is_reframe) & (table.corruption != CLEAN)].severity.unique())
    if levels and severity not in levels:
        severity = max([s for s in levels if s <= severity] or levels)
    if not levels:
        severity = None  # a re-framing-only audit: no corruption severity to speak of
    tasks = [t for t in dict.fromkeys(table.task) if t != "all"]
    n_faces = len(result.faces)
    conditions = table[["corruption", "severity"]].drop_duplicates()
    reframed = bool(conditions.corruption.map(_is_reframe).any())
    parts = [pages.header("Robustness audit",
                          f"model {escape(result.model)} · {n_faces} {escape(config.split)} faces"
                          f"{' (stratified sample)' if config.limit else ''} · {len(conditions)} conditions · "
                          f"{config.n_boot} bootstrap resamples · {result.seconds:.0f} s · faces decoded at "
                          f"{config.work_size} px, corrupted, then resized to the model's input"),
             "<nav>" + "".join(f"<a href='#{t}'>{TASK_LABELS.get(t, t)}</a>" for t in tasks) +
             ("<a href='#coverage'>re-framing coverage</a>" if reframed else "")
             + "<a href='#notes'>notes</a></nav>",
             "<div class='summary'>" + "".join(f"<p>{line}</p>" for line in plain_summary(table, severity)) + "</div>"]
    for task in tasks:
        parts.append(f"<h2 id='{task}'>{TASK_LABELS.get(task, task)}</h2>")
        summary = summary_table(table[table.task == task], "race", severity)
        parts.append(f"<h3>Overall and across races ({_scope(severity, reframed)})</h3>")
        parts.append(summary_html(summary))
        if levels:
            full = summary_table(table[table.task == task], "race")
            parts.append(f"<details><summary>every severity</summary>{summary_html(full)}</details>")
        for attribute in ATTRIBUTES:
            uri = curves_figure(table, task, attribute)
            if uri is None:
                continue
            parts.append(f"<h3>{'MAE' if task == 'age' else 'Accuracy'} by {escape(attribute)}</h3>")
            parts.append(pages.img(uri, f"{task} by {attribute}"))
            if attribute in ("race", "race:gender"):
                parts.append(drop_table(table, task, attribute, severity))
    coverage = table[(table.metric == "coverage") & (table.attribute.isin([OVERALL, "race"]))]
    parts.append("<h2 id='coverage'>Re-framing: faces the detector found</h2>")
    if coverage.empty:
        parts.append("<p>No re-framing condition was run.</p>")
    else:
        pivot = coverage.pivot_table(index=["corruption", "severity"], columns="group", values="value", sort=False)
        parts.append(pivot.to_html(float_format=lambda v: f"{v:.3f}", classes="", border=0))
    parts.append(pages.notes(result.notes, "How to read this", heading="h2", anchor="notes", raw=[
        "Every condition is a predictions CSV in <code>predictions/</code> (the audit's contract) and is audited "
        "with <code>facefair audit</code>'s definitions: accuracy, MAE, degree of bias (std of group accuracies), "
        "worst group. Groups with fewer than "
        f"{config.min_group_size} faces are drawn dotted, marked small, and kept out of gaps.",
        "Drops are paired: the same faces clean and corrupted, resampled together, so their intervals are "
        "those of the difference. Re-framing drops are on the faces the detector found.",
        "Standard corruptions are ImageNet-C's (imagecorruptions); low_resolution, darkness and occlusion "
        "are facefair's (docs/robustness.md gives their severity tables)."]))
    return pages.write(path, pages.document("Robustness audit", parts))
