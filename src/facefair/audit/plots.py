"""Report figures (matplotlib), returned as PNG data URIs (``facefair.pages``' encoder) so the
HTML needs no other file.

``matplotlib.figure.Figure`` is used directly rather than pyplot: no global figure state and no
GUI backend, so this works headless and from several threads.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from facefair.audit.config import OVERALL
from facefair.pages import figure_uri as to_data_uri
from facefair.audit.summary import attribute_label, group_label

COLORS = ("#3b6ea5", "#d17a22", "#4c9a5b", "#b8474b", "#7a5ea8", "#8c6d46", "#c76fae", "#6f6f6f", "#b3a136",
          "#3fa3b5")
UNIT_INTERVAL = {"accuracy", "macro_f1", "fpr", "fnr", "roc_auc", "selection_rate", "ece"}
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "fpr": "FPR", "fnr": "FNR", "mae": "MAE (years)",
                 "ece": "ECE", "roc_auc": "ROC-AUC", "selection_rate": "selection rate", "mean_error":
                 "mean error (years)"}


def _grid(n: int, cols: int = 2) -> tuple[int, int]:
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def _zoom(lows: np.ndarray, highs: np.ndarray, unit: bool) -> tuple[float, float]:
    """An axis around the data (not from 0): a 3-point gap between 0.91 and 0.94 must be visible."""
    finite = np.concatenate([lows[np.isfinite(lows)], highs[np.isfinite(highs)]])
    if len(finite) == 0:
        return (0.0, 1.0) if unit else (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    pad = max(0.08 * (hi - lo), 0.005 if unit else 0.05)
    lo, hi = lo - pad, hi + pad
    if unit:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def group_dots(group_metrics: pd.DataFrame, task: str, metrics: Sequence[str], attribute: str,
               min_group_size: int, verdicts: Optional[dict[str, str]] = None) -> Optional[str]:
    """One dot per group with its CI as a line, on an axis zoomed to the judged groups' intervals;
    the dashed line is the overall value; hollow grey dots are groups (or rate cells) too small to
    judge (their intervals are left out of the zoom and may run off the axis).  ``verdicts`` puts
    each metric's gap verdict in the legend."""
    rows = group_metrics[(group_metrics.task == task) & group_metrics.metric.isin(metrics) &
                         group_metrics["class"].isna() & (group_metrics.attribute == attribute)]
    if rows.empty:
        return None
    groups = list(dict.fromkeys(rows.group))
    fig = Figure(figsize=(5.6, 1.1 + 0.24 * len(groups) * (1 + 0.35 * (len(metrics) - 1))))
    ax = fig.subplots()
    y = np.arange(len(groups))
    step = 0.28 if len(metrics) > 1 else 0.0
    lows, highs = [], []
    for m, metric in enumerate(metrics):
        sub = rows[rows.metric == metric].set_index("group").reindex(groups)
        offset = (m - (len(metrics) - 1) / 2) * step
        value = sub.value.to_numpy(float)
        low, high = sub.ci_low.to_numpy(float), sub.ci_high.to_numpy(float)
        small = sub.flagged.fillna(False).to_numpy(bool)
        if "thin_cell" in sub:  # a rate resting on too few rows is as unjudgeable as a small group
            small = small | sub.thin_cell.fillna(False).to_numpy(bool)
        judged = ~small
        lows += [low[judged], value[judged]]
        highs += [high[judged], value[judged]]
        color = COLORS[m]
        label = METRIC_LABELS.get(metric, metric)
        if verdicts and verdicts.get(metric):
            label += f" — gap {verdicts[metric]}"
        ax.hlines(y[judged] + offset, low[judged], high[judged], color=color, linewidth=1.6)
        ax.plot(value[judged], y[judged] + offset, "o", color=color, markersize=5, label=label)
        if small.any():
            ax.hlines(y[small] + offset, low[small], high[small], color="#aaa", linewidth=1, linestyle=":")
            ax.plot(value[small], y[small] + offset, "o", markerfacecolor="white", markeredgecolor="#999",
                    markersize=5)
        overall = group_metrics[(group_metrics.task == task) & (group_metrics.attribute == OVERALL) &
                                (group_metrics.metric == metric) & group_metrics["class"].isna()]
        if len(overall):
            ax.axvline(overall.value.iloc[0], color=color, linestyle="--", linewidth=1, alpha=0.8)
            lows.append(overall.value.to_numpy(float))
            highs.append(overall.value.to_numpy(float))
    lo, hi = _zoom(np.concatenate(lows), np.concatenate(highs), all(m in UNIT_INTERVAL for m in metrics))
    ax.set_xlim(lo, hi)
    sizes = rows.drop_duplicates("group").set_index("group").n.reindex(groups)
    ax.set_yticks(y, [f"{group_label(g)}  (n={int(n):,})" for g, n in zip(groups, sizes)], fontsize=8)
    ax.set_ylim(len(groups) - 0.5, -0.5)
    names = " and ".join(METRIC_LABELS.get(m, m) for m in metrics)
    ax.set_title(f"{names} by {attribute_label(attribute)}", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    if len(metrics) > 1 or verdicts:
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel(f"lines: CI; dashed: overall; hollow: n (or a rate's rows) < {min_group_size}", fontsize=7)
    fig.tight_layout()
    return to_data_uri(fig)


def confusion_grid(confusion: pd.DataFrame, task: str, attribute: str, classes: Sequence[str],
                   flagged: dict[str, bool]) -> Optional[str]:
    """Row-normalised confusion matrix per group (cell = share of the true class), counts printed
    when the matrix is small enough to read."""
    part = confusion[(confusion.task == task) & (confusion.attribute == attribute)]
    groups = list(dict.fromkeys(part.group))
    if not groups:
        return None
    k = len(classes)
    n_cols = min(len(groups), 5 if k <= 3 else 4 if k <= 5 else 3)
    n_rows = math.ceil(len(groups) / n_cols)
    side = 1.3 + 0.33 * k
    fig = Figure(figsize=(side * n_cols + 0.6, (side + 0.5) * n_rows + 0.2), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    short = [c if len(c) <= 8 else c[:7] + "." for c in classes]
    for ax, group in zip(axes, groups):
        counts = part[part.group == group].pivot(index="true", columns="pred", values="count") \
            .reindex(index=classes, columns=classes).to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = counts / counts.sum(axis=1, keepdims=True)
        ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0, vmax=1)
        if k <= 7:
            for i in range(k):
                for j in range(k):
                    if counts[i, j]:
                        ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if shares[i, j] > 0.6 else "black")
        name = "overall" if attribute == OVERALL else group_label(group)
        title = f"{name} (n={int(counts.sum())})" + (" *" if flagged.get(group) else "")
        ax.set_title(title, fontsize=8, color="#888" if flagged.get(group) else "black")
        ax.set_xticks(range(k), short, rotation=90, fontsize=6)
        ax.set_yticks(range(k), short, fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return to_data_uri(fig)


def reliability_panels(calibration: pd.DataFrame, task: str, attributes: Sequence[str]) -> Optional[str]:
    """Reliability curves (accuracy against mean confidence of the predicted label) per group; groups
    too small to judge are left off the curves to keep them readable (their ECE is in the table)."""
    rows = calibration[(calibration.task == task) & (calibration.n > 0)]
    attributes = [a for a in attributes if (rows.attribute == a).any()]
    if not attributes:
        return None
    n_rows, n_cols = _grid(len(attributes), 3)
    fig = Figure(figsize=(4.2 * n_cols, 3.8 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, attribute in zip(axes, attributes):
        part = rows[(rows.attribute == attribute) & ~rows.flagged]
        ax.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1)
        for i, group in enumerate(dict.fromkeys(part.group)):
            g = part[part.group == group]
            ax.plot(g.mean_confidence, g.accuracy, marker="o", markersize=3, linewidth=1.2,
                    color=COLORS[i % len(COLORS)], label=group_label(group))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title("overall" if attribute == OVERALL else f"by {attribute_label(attribute)}", fontsize=10)
        ax.set_xlabel("mean probability of the predicted label", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if part.group.nunique() > 1:
            ax.legend(fontsize=6, loc="upper left", ncol=1 if part.group.nunique() <= 8 else 2)
    for ax in axes[len(attributes):]:
        ax.set_visible(False)
    fig.tight_layout()
    return to_data_uri(fig)


def tradeoff_scatter(table: pd.DataFrame, panels: Sequence[tuple[str, str]], x_metric: str, y_metric: str,
                     x_label: str, y_label: str) -> Optional[str]:
    """One point per run: overall performance against a fairness gap, with CI whiskers on both."""
    panels = [p for p in panels if ((table.task == p[0]) & (table.attribute == p[1])).any()]
    if not panels:
        return None
    n_rows, n_cols = _grid(len(panels), 3)
    fig = Figure(figsize=(4.4 * n_cols, 3.8 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    runs = list(dict.fromkeys(table.run))
    for ax, (task, attribute) in zip(axes, panels):
        part = table[(table.task == task) & (table.attribute == attribute)].set_index("run")
        ym = y_metric if f"{y_metric}" in part and part[y_metric].notna().any() else "mae"
        xm = x_metric
        for i, run in enumerate(runs):
            if run not in part.index:
                continue
            r = part.loc[run]
            x, y = r.get(xm, np.nan), r.get(ym, np.nan)
            if pd.isna(x) or pd.isna(y):
                continue
            xerr = [[max(0, x - r.get(f"{xm}_ci_low", x))], [max(0, r.get(f"{xm}_ci_high", x) - x)]]
            yerr = [[max(0, y - r.get(f"{ym}_ci_low", y))], [max(0, r.get(f"{ym}_ci_high", y) - y)]]
            ax.errorbar([x], [y], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), fmt="o",
                        color=COLORS[i % len(COLORS)], capsize=2, label=run)
            ax.annotate(run, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_title(f"{task} by {attribute_label(attribute)}", fontsize=10)
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_ylabel(y_label if ym == y_metric else "overall MAE (years, lower is better)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return to_data_uri(fig)
