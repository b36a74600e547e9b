"""The cross-dataset (transfer) audit: how a run's figures hold up on other people's faces.

A run is measured on a test split of the dataset it trained on; this compares that
in-distribution table with the predictions of the same model on other datasets (written by
``facefair evaluate RUN --data A --data B``), per dataset and per group (race, gender,
race x gender, age group where labelled):

- accuracy (the group's recall when the group is a class of the task: "Asian" for race) or MAE,
  each with the audit's own bootstrap interval (``audit_predictions``);
- the change from the in-distribution split with an interval for the difference.  The two
  tables hold different faces, so they are **independent samples**: each is resampled within its
  groups with its own seed and the interval is the percentile interval of the difference of the
  two sides' replicates (not a paired test);
- where each group's errors go (its confusion row: "Asian faces: 53% called White");
- collapses: a group whose accuracy/recall drops by more than ``collapse_drop`` or ends below
  ``collapse_below`` (MAE: rises by more than ``collapse_mae`` years), and whether the worst group
  outside is the worst group inside.

Datasets with different race schemes are compared on the scheme both share (race7 -> race5):
true labels are mapped, and a finer model's decisions are read in the coarser scheme.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair import labels as L
from facefair.audit import bootstrap as B
from facefair.audit.config import ALL, OVERALL, AuditConfig, TransferConfig
from facefair.audit.metrics import HIGHER_IS_BETTER
from facefair.run import TRANSFER_DIR, Run

TRANSFER_JSON = "transfer.json"
GROUPS_CSV = "transfer_groups.csv"
CONFUSION_CSV = "transfer_confusion.csv"
HTML_NAME = "transfer.html"
GROUP_COLUMNS = ["dataset", "task", "attribute", "group", "metric", "n_in", "value_in", "ci_low_in", "ci_high_in",
                 "n_out", "value_out", "ci_low_out", "ci_high_out", "change", "change_low", "change_high",
                 "judged", "collapsed", "reason"]


def definitions(config: TransferConfig) -> dict[str, str]:
    level = f"{config.audit.ci_level:.0%}"
    return {
        "value": "accuracy of the task among the group's faces; where the group is a class of the task (race "
                 "task, race groups) this is the class's recall. MAE (years) for exact age.",
        "ci": f"{level} percentile bootstrap interval ({config.audit.n_boot} resamples within each group), as in "
              "`facefair audit`.",
        "change": f"outside minus inside. Its {level} interval is the percentile interval of the difference "
                  "between the two sides' bootstrap replicates; the two tables are different faces, so they are "
                  "resampled independently (independent samples, each side with its own seed), not paired.",
        "collapsed": f"a judged group whose accuracy/recall drops by more than {config.collapse_drop:.2f} or ends "
                     f"below {config.collapse_below:.2f} outside (MAE: rises by more than {config.collapse_mae:g} "
                     "years).",
        "judged": f"both sides have at least min_group_size ({config.audit.min_group_size}) faces in the group; "
                  "smaller groups are shown but neither flagged nor ranked.",
        "worst group": "the judged group with the lowest accuracy (highest MAE) of an attribute, inside and "
                       "outside; 'same' says whether the model's weakest group stays its weakest.",
        "race scheme": "datasets with different race schemes are compared on the scheme both share (race7 and "
                       "race5 share race5): true labels are mapped, a finer model's decisions read in the coarser "
                       "scheme with their probabilities summed.",
    }


def race_scheme_of_table(frame: pd.DataFrame) -> Optional[str]:
    """The race scheme of a predictions table: of its race probabilities, else of its labels."""
    from facefair.table import classes_of
    classes = classes_of(frame, "race")
    if classes:
        return next((s for s, c in L.RACE_SCHEMES.items() if set(classes) == set(c)), None)
    values = [L.normalize_race(v) for v in frame.get("race_true", pd.Series(dtype=object)).dropna()]
    return L.race_scheme_of([v for v in values if v]) if any(values) else None


def on_scheme(frame: pd.DataFrame, scheme: Optional[str]) -> pd.DataFrame:
    """``frame`` with race truth and decisions read in ``scheme`` (a no-op when already there)."""
    own = race_scheme_of_table(frame)
    if scheme is None or own is None or own == scheme:
        return frame
    from facefair.table import collapse_race_scheme
    out = collapse_race_scheme(frame, own, scheme) if (own, scheme) in L.RACE_MAPPINGS else frame.copy()
    for column in ("race", "race_true"):
        if column in out:
            out[column] = out[column].map(lambda r: L.map_race(L.normalize_race(r), own, scheme)
                                          if isinstance(r, str) else None)
    return out


def _audit(frame: pd.DataFrame, config: AuditConfig, source: str):
    from facefair.audit.core import audit_predictions
    replicates: dict = {}
    return audit_predictions(frame, config, source, replicates=replicates), replicates


def _rows(result) -> dict[tuple, dict]:
    gm = result.group_metrics
    gm = gm[gm["class"].isna() & gm["metric"].isin(["accuracy", "mae"])]
    return {(r["task"], r["attribute"], r["group"], r["metric"]): r for r in gm.to_dict("records")}


def _confusion_rows(result, side: str, dataset: str) -> list[dict]:
    """Each class-group's row of its own task's confusion matrix ("Asian faces: 53% called White")."""
    confusion = result.confusion
    mine = confusion[(confusion["task"] == confusion["attribute"]) & (confusion["group"] == confusion["true"])]
    out = []
    for (task, group), rows in mine.groupby(["task", "group"], sort=False):
        total = int(rows["count"].sum())
        for r in rows.to_dict("records"):
            out.append({"dataset": dataset, "side": side, "task": task, "group": group, "pred": r["pred"],
                        "count": int(r["count"]), "n": total, "share": r["count"] / total if total else np.nan})
    return out


def _collapse(metric: str, inside: float, outside: float, judged: bool, config: TransferConfig) -> tuple[bool, str]:
    if not judged or np.isnan(outside):
        return False, ""
    if metric == "mae":
        rise = outside - inside
        return (bool(rise > config.collapse_mae), f"MAE up {rise:.1f} years" if rise > config.collapse_mae else "")
    reasons = []
    if not np.isnan(inside) and inside - outside > config.collapse_drop:
        reasons.append(f"down {100 * (inside - outside):.0f} points")
    if outside < config.collapse_below:
        reasons.append(f"below {config.collapse_below:.2f}")
    return bool(reasons), ", ".join(reasons)


def compare_tables(inside: pd.DataFrame, outside: pd.DataFrame, name: str, config: TransferConfig,
                   index: int = 0, inside_source: str = "in-distribution test split",
                   outside_source: str = "") -> dict:
    """One dataset against the in-distribution table: its group rows, confusion rows, collapses and
    worst groups (a dict, JSON-ready but for the two DataFrames under ``groups``/``confusion``)."""
    scheme = L.shared_scheme(race_scheme_of_table(inside), race_scheme_of_table(outside))
    inside, outside = on_scheme(inside, scheme), on_scheme(outside, scheme)
    res_in, rep_in = _audit(inside, config.audit, inside_source)
    # Its own seed: the two sides' resamples must be independent, as their faces are.
    res_out, rep_out = _audit(outside, dataclasses.replace(config.audit, seed=config.audit.seed + 1 + index),
                              outside_source or name)
    rows_in, rows_out = _rows(res_in), _rows(res_out)
    records = []
    for key, out in rows_out.items():
        task, attribute, group, metric = key
        inn = rows_in.get(key, {})
        value_in = float(inn.get("value", np.nan))
        judged = bool(inn) and not inn["flagged"] and not out["flagged"]
        change_low = change_high = np.nan
        if inn and key in rep_in and key in rep_out and len(rep_in[key]) and len(rep_out[key]):
            low, high = B.percentile_interval((rep_out[key] - rep_in[key])[:, None], config.audit.ci_level)
            change_low, change_high = float(low[0]), float(high[0])
        collapsed, reason = _collapse(metric, value_in, out["value"], judged and attribute != OVERALL, config)
        records.append({"dataset": name, "task": task, "attribute": attribute, "group": group,
                        "metric": "recall" if task == attribute else metric,
                        "n_in": int(inn.get("n", 0)), "value_in": value_in, "ci_low_in": float(inn.get("ci_low", np.nan)),
                        "ci_high_in": float(inn.get("ci_high", np.nan)), "n_out": int(out["n"]),
                        "value_out": float(out["value"]), "ci_low_out": float(out["ci_low"]),
                        "ci_high_out": float(out["ci_high"]), "change": float(out["value"]) - value_in,
                        "change_low": change_low, "change_high": change_high, "judged": judged,
                        "collapsed": collapsed, "reason": reason})
    groups = pd.DataFrame(records, columns=GROUP_COLUMNS)
    confusion = pd.DataFrame(_confusion_rows(res_out, "outside", name) + _confusion_rows(res_in, "inside", name))
    return {"name": name, "source": outside_source, "faces": int(len(outside)), "race_scheme": scheme,
            "reference_faces": int(len(inside)), "tasks": [t.name for t in res_out.tasks],
            "attributes": res_out.attributes, "groups": groups, "confusion": confusion,
            "worst_groups": worst_groups(groups), "errors": error_sentences(confusion),
            "notes": [n for n in res_out.notes if "has no labelled row" not in n]}


def worst_groups(groups: pd.DataFrame) -> list[dict]:
    """Per (task, attribute): the weakest judged group inside and outside, and whether they agree."""
    out = []
    judged = groups[groups["judged"] & (groups["attribute"] != OVERALL)]
    for (task, attribute), rows in judged.groupby(["task", "attribute"], sort=False):
        if len(rows) < 2:
            continue
        metric = rows["metric"].iloc[0]
        lower = HIGHER_IS_BETTER.get("accuracy" if metric == "recall" else metric, True)
        pick = (lambda s: s.idxmin()) if lower else (lambda s: s.idxmax())
        inside, outside = rows.loc[pick(rows["value_in"])], rows.loc[pick(rows["value_out"])]
        out.append({"task": task, "attribute": attribute, "metric": metric,
                    "worst_inside": inside["group"], "value_inside": float(inside["value_in"]),
                    "worst_outside": outside["group"], "value_outside": float(outside["value_out"]),
                    "same": bool(inside["group"] == outside["group"])})
    return out


def error_sentences(confusion: pd.DataFrame, side: str = "outside") -> list[dict]:
    """Per class-group, where most of its errors go: ``Asian faces: 53% called White (186 of 352)``."""
    if confusion.empty:
        return []
    rows = confusion[(confusion["side"] == side) & (confusion["group"] != confusion["pred"])]
    out = []
    for (task, group), part in rows.groupby(["task", "group"], sort=False):
        top = part.sort_values("count", ascending=False).iloc[0]
        if top["count"] == 0:
            continue
        out.append({"task": task, "group": group, "called": top["pred"], "count": int(top["count"]),
                    "n": int(top["n"]), "share": float(top["share"]),
                    "text": f"{group} faces: {top['share']:.0%} called {top['pred']} ({top['count']} of {top['n']})"})
    return out


def transfer_audit(inside: pd.DataFrame, datasets: dict[str, pd.DataFrame], config: Optional[TransferConfig] = None,
                   sources: Optional[dict[str, str]] = None, inside_source: str = "in-distribution test split") -> dict:
    config = config or TransferConfig()
    sources = sources or {}
    results = [compare_tables(inside, frame, name, config, i, inside_source, sources.get(name, ""))
               for i, (name, frame) in enumerate(datasets.items())]
    return {"reference": {"source": inside_source, "faces": int(len(inside))}, "datasets": results,
            "config": {"collapse_drop": config.collapse_drop, "collapse_below": config.collapse_below,
                       "collapse_mae": config.collapse_mae, "audit": config.audit.to_dict()},
            "definitions": definitions(config)}


def collapses(dataset: dict) -> pd.DataFrame:
    groups = dataset["groups"]
    return groups[groups["collapsed"]].sort_values("change")


def headline_lines(dataset: dict) -> list[str]:
    """The few lines ``facefair evaluate`` prints per dataset."""
    groups = dataset["groups"]
    lines = [f"transfer: {dataset['name']} ({dataset['faces']} faces) vs the run's test split "
             f"({dataset['reference_faces']} faces)" + (f"; race on {dataset['race_scheme']}"
                                                        if dataset["race_scheme"] else "")]

    def figure(r) -> str:
        fmt = "{:.2f}" if r["metric"] == "mae" else "{:.3f}"
        signed = "{:+.2f}" if r["metric"] == "mae" else "{:+.3f}"
        return (f"{fmt.format(r['value_out'])} [{fmt.format(r['ci_low_out'])}, {fmt.format(r['ci_high_out'])}] "
                f"(test {fmt.format(r['value_in'])}; change {signed.format(r['change'])} "
                f"[{signed.format(r['change_low'])}, {signed.format(r['change_high'])}])")

    for r in groups[groups["attribute"] == OVERALL].to_dict("records"):
        lines.append(f"  {r['task']} {r['metric']}: {figure(r)}")
    for r in groups[groups["metric"] == "recall"].to_dict("records"):
        mark = f"  COLLAPSED ({r['reason']})" if r["collapsed"] else ("" if r["judged"] else "  (too few to judge)")
        lines.append(f"  {r['task']} recall {r['group']} (n={r['n_out']}): {figure(r)}{mark}")
    for sentence in dataset["errors"]:
        if sentence["task"] == "race":
            lines.append(f"  {sentence['text']}")
    for w in dataset["worst_groups"]:
        if w["attribute"] in ("race", "gender", f"race{':'}gender"):
            lines.append(f"  worst {w['task']} group by {w['attribute']}: {w['worst_outside']} outside, "
                         f"{w['worst_inside']} inside" + (" (the same)" if w["same"] else " (different)"))
    return lines


def write_transfer(result: dict, out_dir: str | Path) -> Path:
    """OUT/transfer.json, transfer_groups.csv, transfer_confusion.csv and transfer.html."""
    from facefair.audit.output import _clean
    from facefair.audit.transfer_html import render_transfer_html
    from facefair.runtime import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = pd.concat([d["groups"] for d in result["datasets"]], ignore_index=True)
    confusion = pd.concat([d["confusion"] for d in result["datasets"]], ignore_index=True)
    groups.to_csv(out / GROUPS_CSV, index=False)
    confusion.to_csv(out / CONFUSION_CSV, index=False)
    payload = {**result, "datasets": [{**{k: v for k, v in d.items() if k not in ("groups", "confusion")},
                                       "groups": d["groups"].to_dict("records"),
                                       "collapsed": collapses(d)[["task", "attribute", "group", "metric", "value_in",
                                                                  "value_out", "change", "reason"]].to_dict("records")}
                                      for d in result["datasets"]]}
    write_text_atomic(out / TRANSFER_JSON, json.dumps(_clean(payload), indent=1))
    write_text_atomic(out / HTML_NAME, render_transfer_html(result))
    return out


def load_transfer(run: str | Path) -> Optional[dict]:
    """RUN/transfer/transfer.json (the last ``facefair evaluate RUN --data ...``), or None."""
    path = Run(run).transfer_dir / TRANSFER_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = ["TransferConfig", "transfer_audit", "compare_tables", "write_transfer", "load_transfer", "headline_lines",
           "collapses", "worst_groups", "error_sentences", "on_scheme", "TRANSFER_DIR", "ALL"]
