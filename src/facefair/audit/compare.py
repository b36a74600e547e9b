"""Several runs side by side: overall performance against fairness gaps (``facefair audit --compare``)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.audit import plots
from facefair.audit.config import OVERALL, AuditConfig, AuditResult
from facefair.audit.core import audit_predictions
from facefair.audit.groups import load_predictions
from facefair.audit.report_html import CSS, cell
from facefair.audit.summary import attribute_label, task_label

#: Overall metrics (from the "overall" rows) and gaps (per attribute) that make up a comparison row.
OVERALL_METRICS = {"classification": ("accuracy", "macro_f1"), "regression": ("mae",)}
GAP_METRICS = {
    "classification": ("worst_group_accuracy", "accuracy_difference", "degree_of_bias", "skewed_error_ratio",
                       "equalized_odds_difference", "demographic_parity_difference", "fpr_difference",
                       "fnr_difference", "ece_difference"),
    "regression": ("worst_group_mae", "mae_difference", "degree_of_bias"),
}


def run_name(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name == "predictions.csv" else path.stem


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def comparison_rows(name: str, result: AuditResult) -> list[dict]:
    gm, gaps = result.group_metrics, result.gaps
    rows = []
    for info in result.tasks:
        base = {}
        for metric in OVERALL_METRICS[info.kind]:
            hit = gm[(gm.task == info.name) & (gm.attribute == OVERALL) & (gm.metric == metric) & gm["class"].isna()]
            if len(hit):
                base.update({metric: hit.value.iloc[0], f"{metric}_ci_low": hit.ci_low.iloc[0],
                             f"{metric}_ci_high": hit.ci_high.iloc[0]})
        for attribute in result.attributes:
            part = gaps[(gaps.task == info.name) & (gaps.attribute == attribute) & gaps["class"].isna()]
            if part.empty:
                continue
            row = {"run": name, "source": result.source, "task": info.name, "attribute": attribute, "n": info.n,
                   **base, "n_groups": int(part.n_groups.iloc[0])}
            for metric in GAP_METRICS[info.kind]:
                hit = part[part.metric == metric]
                if len(hit):
                    row.update({metric: hit.value.iloc[0], f"{metric}_ci_low": hit.ci_low.iloc[0],
                                f"{metric}_ci_high": hit.ci_high.iloc[0]})
            rows.append(row)
    return rows


def compare_runs(paths: Sequence[str | Path], config: Optional[AuditConfig] = None,
                 names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per (run, task, attribute): overall accuracy (or MAE) and the fairness gaps, with CIs.

    Each path is a predictions CSV or a run folder holding ``predictions.csv``; every run is
    audited with the same config (same seed and resamples), so differences are the models'.
    """
    if len(paths) < 1:
        raise ValueError("compare needs at least one run")
    config = config or AuditConfig()
    names = list(names) if names else _unique([run_name(p) for p in paths])
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} runs")
    rows = []
    for name, path in zip(names, paths):
        frame, source = load_predictions(path)
        rows += comparison_rows(name, audit_predictions(frame, config, source))
    table = pd.DataFrame(rows)
    leading = ["run", "task", "attribute", "n", "n_groups"]
    return table[leading + [c for c in table.columns if c not in leading]] if len(table) else table


def _panels(table: pd.DataFrame, metric: str) -> list[tuple[str, str]]:
    if metric not in table:
        return []
    usable = table[table[metric].notna()]
    return list(dict.fromkeys(zip(usable.task, usable.attribute)))


def render_compare_html(table: pd.DataFrame, config: AuditConfig) -> str:
    figures = [
        ("Overall accuracy against degree of bias (std of group accuracies; exact age: MAE and std of group MAEs)",
         plots.tradeoff_scatter(table, _panels(table, "degree_of_bias"), "degree_of_bias", "accuracy",
                                "degree of bias (lower is fairer)", "overall accuracy")),
        ("Overall accuracy against equalized-odds difference",
         plots.tradeoff_scatter(table, _panels(table, "equalized_odds_difference"), "equalized_odds_difference",
                                "accuracy", "equalized-odds difference (lower is fairer)", "overall accuracy")),
    ]
    sections = []
    for task, part in table.groupby("task", sort=False):
        metrics = [m for m in ("accuracy", "macro_f1", "mae") + tuple(
            m for ms in GAP_METRICS.values() for m in ms) if m in part and part[m].notna().any()]
        metrics = list(dict.fromkeys(metrics))
        head = "".join(f"<th>{escape(m)}</th>" for m in metrics)
        body = []
        for r in part.itertuples():
            d = r._asdict()
            cells = "".join(
                f"<td>{cell(d.get(m, np.nan), d.get(m + '_ci_low', np.nan), d.get(m + '_ci_high', np.nan), m)}</td>"
                for m in metrics)
            body.append(f"<tr><td class='l'>{escape(str(r.run))}</td><td class='l'>"
                        f"{escape(attribute_label(r.attribute))}</td><td>{r.n_groups}</td>{cells}</tr>")
        sections.append(f"<h2>{escape(task_label(task).capitalize())}</h2><table><thead><tr><th class='l'>run</th>"
                        f"<th class='l'>attribute</th><th>groups</th>{head}</tr></thead><tbody>{''.join(body)}"
                        "</tbody></table>")
    images = "".join(f"<h3>{escape(title)}</h3><img src='{uri}' alt='{escape(title, quote=True)}'>"
                     for title, uri in figures if uri)
    runs = ", ".join(escape(str(r)) for r in dict.fromkeys(table.run)) if len(table) else "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>facefair audit comparison</title><style>{CSS}</style></head>
<body><h1>Fairness audit: runs compared</h1>
<p class="meta">Runs: {runs}<br>Every run audited with the same settings: {config.ci_level:.0%} bootstrap intervals
from {config.n_boot} resamples (seed {config.seed}); groups with fewer than {config.min_group_size} rows left out
of the gaps. Overall figures use every labelled row; gaps compare groups of the attribute in the row.</p>
<h2>Accuracy against fairness</h2>{images}
{''.join(sections)}
</body></html>
"""


def write_comparison(table: pd.DataFrame, out_dir: str | Path, config: Optional[AuditConfig] = None
                     ) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"compare.csv": out / "compare.csv", "compare.html": out / "compare.html"}
    table.to_csv(paths["compare.csv"], index=False)
    paths["compare.html"].write_text(render_compare_html(table, config or AuditConfig()), encoding="utf-8")
    return paths
