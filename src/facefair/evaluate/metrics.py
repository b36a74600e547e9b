"""Per-task metrics from a predictions table.

Accuracy, macro-F1, ROC-AUC and the gender error rates by race are the audit's own definitions
(``facefair.audit.metrics``; the table comes from ``audit_predictions``), so report.json,
gender_fpr_fnr_by_race.csv and ``facefair audit`` can never disagree.  Per-class precision /
recall / F1 and the confusion matrix are scikit-learn's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, mean_absolute_error, precision_recall_fscore_support

from facefair.table import classes_of, probability_columns, tasks_in


def _labelled(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    truth, pred = frame[f"{task}_true"], frame[f"{task}_pred"]
    keep = truth.notna() & pred.notna() & (truth.astype(str) != "")
    return frame[keep]


def classification_metrics(frame: pd.DataFrame, task: str) -> dict:
    rows = _labelled(frame, task)
    if rows.empty:
        return {"n": 0}
    classes = classes_of(frame, task) or sorted(set(rows[f"{task}_true"]) | set(rows[f"{task}_pred"]))
    from facefair.audit.config import AuditConfig
    from facefair.audit.metrics import macro_f1, macro_roc_auc
    y_true, y_pred = rows[f"{task}_true"].astype(str), rows[f"{task}_pred"].astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    result = {
        "n": int(len(rows)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f_), "support": int(s)}
                      for c, p, r, f_, s in zip(classes, precision, recall, f1, support)},
        "classes": classes,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }
    probs = probability_columns(frame, task)
    if probs:
        proba = rows[probs].to_numpy(dtype=float)
        scored = np.isfinite(proba).all(axis=1)
        prob_classes = tuple(classes_of(frame, task))
        positive = None
        if len(prob_classes) == 2:
            wanted = AuditConfig().positive_classes.get(task)
            positive = wanted if wanted in prob_classes else prob_classes[1]
        auc = macro_roc_auc(y_true[scored].to_numpy(), proba[scored], {c: i for i, c in enumerate(prob_classes)},
                            prob_classes, positive)
        if not np.isnan(auc):
            result["roc_auc"] = auc
    return result


def regression_metrics(frame: pd.DataFrame, task: str = "age") -> dict:
    truth, pred = frame[f"{task}_true"].astype(float), frame[f"{task}_pred"].astype(float)
    keep = truth.notna() & pred.notna()
    if not keep.any():
        return {"n": 0}
    error = (pred[keep] - truth[keep]).abs()
    return {"n": int(keep.sum()), "mae": float(mean_absolute_error(truth[keep], pred[keep])),
            "cs5": float((error <= 5).mean()), "median_abs_error": float(error.median())}


def all_task_metrics(frame: pd.DataFrame) -> dict[str, dict]:
    metrics = {}
    for task in tasks_in(frame):
        if f"{task}_true" not in frame:
            continue
        metrics[task] = classification_metrics(frame, task) if probability_columns(frame, task) or \
            frame[f"{task}_pred"].dtype == object else regression_metrics(frame, task)
    return metrics


def selection_score(metrics: dict[str, dict]) -> float:
    """Model-selection score: the mean over tasks of macro-F1 (classification) and of
    max(0, 1 - MAE/10) for exact age, so a 5-year MAE weighs like a 0.5 F1."""
    scores = []
    for values in metrics.values():
        if "macro_f1" in values:
            scores.append(values["macro_f1"])
        elif "mae" in values:
            scores.append(max(0.0, 1 - values["mae"] / 10))
    return float(np.mean(scores)) if scores else float("nan")


def gender_rates_by_race(frame: pd.DataFrame) -> Optional[pd.DataFrame]:
    """FPR (males predicted female) and FNR (females predicted male) per race: the first fairness
    table, read off the audit (``n_boot=0``) so it is the audit's numbers.  A rate with no row to
    rest on (no woman of a race) is NaN, not fairlearn's 0; ``n_male``/``n_female`` say how many
    rows each rate rests on, and ``thin`` marks rates on fewer than the audit's min_group_size."""
    if "gender_pred" not in frame or "gender_true" not in frame or "race" not in frame:
        return None
    from facefair.audit.config import OVERALL, AuditConfig
    from facefair.audit.core import audit_predictions
    table = frame[["race", "gender_true", "gender_pred"]].astype(object)
    table = table.where(table.notna(), None)
    try:
        result = audit_predictions(table, AuditConfig(attributes=("race",), intersections=(), tasks=("gender",),
                                                      n_boot=0))
    except ValueError:
        return None
    gm = result.group_metrics[(result.group_metrics.task == "gender") & result.group_metrics["class"].isna()]
    if not (gm.attribute == "race").any():
        return None
    rows = []
    for attribute, part in ((("race", gm[gm.attribute == "race"])), (OVERALL, gm[gm.attribute == OVERALL])):
        for group, g in part.groupby("group", sort=False):
            g = g.set_index("metric")
            rows.append({"race": "(all)" if attribute == OVERALL else group, "accuracy": g.value["accuracy"],
                         "fpr_male_as_female": g.value["fpr"], "fnr_female_as_male": g.value["fnr"],
                         "n": int(g.n["accuracy"]), "n_male": int(g.support["fpr"]), "n_female": int(g.support["fnr"]),
                         "thin": bool(g.thin_cell["fpr"] or g.thin_cell["fnr"] or g.flagged["accuracy"])})
    return pd.DataFrame(rows)


def write_confusion_matrices(metrics: dict[str, dict], out_dir: Path) -> list[Path]:
    written = []
    for task, values in metrics.items():
        if "confusion_matrix" in values:
            path = out_dir / f"confusion_matrix_{task}.csv"
            pd.DataFrame(values["confusion_matrix"], index=[f"true:{c}" for c in values["classes"]],
                         columns=[f"pred:{c}" for c in values["classes"]]).to_csv(path)
            written.append(path)
    return written
