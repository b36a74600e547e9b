"""Per-task metrics from a predictions table (scikit-learn does the arithmetic)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, mean_absolute_error,
                             precision_recall_fscore_support, roc_auc_score)

from facefair.evaluate.inference import classes_of, probability_columns, tasks_in


def _labelled(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    truth, pred = frame[f"{task}_true"], frame[f"{task}_pred"]
    keep = truth.notna() & pred.notna() & (truth.astype(str) != "")
    return frame[keep]


def classification_metrics(frame: pd.DataFrame, task: str) -> dict:
    rows = _labelled(frame, task)
    if rows.empty:
        return {"n": 0}
    classes = classes_of(frame, task) or sorted(set(rows[f"{task}_true"]) | set(rows[f"{task}_pred"]))
    y_true, y_pred = rows[f"{task}_true"].astype(str), rows[f"{task}_pred"].astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    result = {
        "n": int(len(rows)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f_), "support": int(s)}
                      for c, p, r, f_, s in zip(classes, precision, recall, f1, support)},
        "classes": classes,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }
    probs = probability_columns(frame, task)
    present = sorted(set(y_true))
    if probs and len(present) > 1:
        p = rows[probs].to_numpy(dtype=float)
        p = p / p.sum(axis=1, keepdims=True)
        if len(classes) == 2:
            result["roc_auc"] = float(roc_auc_score(y_true == classes[1], p[:, 1]))
        else:
            # One-vs-rest macro AUC over the classes that occur in the truth.
            cols = [classes.index(c) for c in present]
            sub = p[:, cols] / p[:, cols].sum(axis=1, keepdims=True)
            result["roc_auc"] = float(roc_auc_score(y_true, sub, multi_class="ovr", labels=present))
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
    """FPR (males predicted female) and FNR (females predicted male) per race: the first fairness table."""
    if "gender_pred" not in frame or "race" not in frame:
        return None
    rows = _labelled(frame, "gender")
    rows = rows[rows["race"].notna()]
    if rows.empty:
        return None
    y_true = (rows["gender_true"] == "Female").astype(int)
    y_pred = (rows["gender_pred"] == "Female").astype(int)
    metric_frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "fpr_male_as_female": false_positive_rate,
                 "fnr_female_as_male": false_negative_rate, "n": lambda t, p: len(t)},
        y_true=y_true, y_pred=y_pred, sensitive_features=rows["race"].astype(str))
    table = metric_frame.by_group.reset_index().rename(columns={"sensitive_feature_0": "race"})
    overall = metric_frame.overall.to_dict()
    overall["race"] = "(all)"
    return pd.concat([table, pd.DataFrame([overall])], ignore_index=True)


def write_confusion_matrices(metrics: dict[str, dict], out_dir: Path) -> list[Path]:
    written = []
    for task, values in metrics.items():
        if "confusion_matrix" in values:
            path = out_dir / f"confusion_matrix_{task}.csv"
            pd.DataFrame(values["confusion_matrix"], index=[f"true:{c}" for c in values["classes"]],
                         columns=[f"pred:{c}" for c in values["classes"]]).to_csv(path)
            written.append(path)
    return written
