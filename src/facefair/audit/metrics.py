"""The reference definition of every group metric, through fairlearn's ``MetricFrame`` and
scikit-learn's metrics (``audit.cells`` computes the same figures from cell counts, which is how
the audit scales to millions of rows; a test checks the two agree).

Multi-class tasks are never binarised behind the user's back: every rate is computed one class
against the rest, reported per class (``*_ovr`` with a ``class``) and as the macro average over
the classes where the rate is defined.  A rate whose denominator is empty in a group (FNR of a
class with no true members there) is NaN here; fairlearn's rate functions return 0 in that
case, which would read as "perfect" and inflate gaps, so they are only called when defined.

These functions are the one definition of each metric: ``facefair evaluate`` (report.json and
gender_fpr_fnr_by_race.csv) calls them too, so the two can never disagree.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import numpy as np
import pandas as pd
import sklearn.metrics as skm
from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate, selection_rate

from facefair.audit.calibration import expected_calibration_error
from facefair.audit.groups import TaskData

#: Joins a per-class metric's name and its class inside the metric keys ("fpr_ovr|Black").
KEY_SEP = "|"

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "roc_auc": True, "fpr": False, "fnr": False,
                    "ece": False, "mae": False}


def split_key(key: str) -> tuple[str, Optional[str]]:
    name, _, cls = key.partition(KEY_SEP)
    return name, (cls or None)


def _one_vs_rest(rate: Callable, cls: str, needs_positives: bool) -> Callable:
    def metric(y_true, y_pred) -> float:
        truth = (np.asarray(y_true) == cls).astype(int)
        denominator = (truth == 1).sum() if needs_positives else (truth == 0).sum()
        if denominator == 0:
            return float("nan")
        return float(rate(truth, (np.asarray(y_pred) == cls).astype(int), pos_label=1))
    return metric


def macro_roc_auc(y_true, proba: np.ndarray, column_of: dict[str, int], classes: tuple[str, ...],
                  positive: Optional[str]) -> float:
    """ROC-AUC on the model's raw probabilities (never renormalised: that would change its scores),
    binary: of the positive class; multi-class: mean one-vs-rest AUC over the classes that have
    both members and non-members among the rows.  NaN where no class qualifies."""
    scored = [positive] if positive is not None else [c for c in classes if c in column_of]
    y_true = np.asarray(y_true)
    values = []
    for cls in scored:
        truth = y_true == cls
        if 0 < truth.sum() < len(truth):
            values.append(skm.roc_auc_score(truth, proba[:, column_of[cls]]))
    return float(np.mean(values)) if values else float("nan")


def _macro_auc(proba: np.ndarray, column_of: dict[str, int], classes: tuple[str, ...], positive: Optional[str]):
    def metric(y_true, y_pred, rows) -> float:
        return macro_roc_auc(y_true, proba[np.asarray(rows)], column_of, classes, positive)
    return metric


def _ece(confidence: np.ndarray, n_bins: int):
    def metric(y_true, y_pred, rows) -> float:
        rows = np.asarray(rows)
        return expected_calibration_error(confidence[rows], np.asarray(y_true) == np.asarray(y_pred), n_bins)
    return metric


def macro_f1(y_true, y_pred) -> float:
    """Macro-F1 over the classes that occur in the true labels.  sklearn's default (classes true or
    predicted) would give a group of only men an F1 of 0 for "Female" whenever one man is misread,
    halving the score; errors into absent classes already cost the true class's recall.  Rows of a
    single true class have no macro-F1 (it would be that class's F1, which reads higher than the
    accuracy): NaN, "not applicable"."""
    present = np.unique(np.asarray(y_true))
    if len(present) < 2:
        return float("nan")
    return float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def _ovr_counts(classes: tuple[str, ...]):
    """Per class one-vs-rest [[TN, FP], [FN, TP]] (sklearn multilabel_confusion_matrix)."""
    def metric(y_true, y_pred) -> np.ndarray:
        return skm.multilabel_confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(classes))
    return metric


def classification_metric_frame(task: TaskData, rows: np.ndarray, groups: np.ndarray, n_bins: int,
                                scored_rows: Optional[np.ndarray] = None) -> MetricFrame:
    """MetricFrame over ``rows`` (indices into the table) with one column per metric.

    ``scored_rows`` (bool over the table) marks rows with usable probabilities; ROC-AUC and ECE
    need them and are computed only when every audited row has them.
    """
    metrics: dict[str, Callable] = {
        "accuracy": skm.accuracy_score,
        "macro_f1": macro_f1,
    }
    if task.positive_class is not None:
        pos = task.positive_class
        metrics[f"fpr_ovr{KEY_SEP}{pos}"] = _one_vs_rest(false_positive_rate, pos, needs_positives=False)
        metrics[f"fnr_ovr{KEY_SEP}{pos}"] = _one_vs_rest(false_negative_rate, pos, needs_positives=True)
        metrics[f"selection_rate_ovr{KEY_SEP}{pos}"] = partial(selection_rate, pos_label=pos)
    else:
        # fairlearn's rate functions are binary-only; for K classes one sklearn call per group gives
        # all K one-vs-rest matrices (instead of 3K fairlearn calls), turned into rates below.
        metrics["ovr_counts"] = _ovr_counts(task.classes)
    sample_params = {}
    if task.proba is not None and scored_rows is not None and scored_rows[rows].all():
        column_of = {c: i for i, c in enumerate(task.prob_classes)}
        metrics["roc_auc"] = _macro_auc(task.proba, column_of, task.classes, task.positive_class)
        metrics["ece"] = _ece(task.confidence(), n_bins)
        # MetricFrame splits only 1-D per-row parameters, so the metrics get row numbers and look
        # the probabilities up themselves.
        sample_params = {"roc_auc": {"rows": rows}, "ece": {"rows": rows}}
    return MetricFrame(metrics=metrics, y_true=task.y_true[rows], y_pred=task.y_pred[rows],
                       sensitive_features=pd.Series(groups, name="group"), sample_params=sample_params or None)


def ovr_rates(counts: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One-vs-rest FPR, FNR and selection rate from stacked (groups, K, 2, 2) counts; NaN where the
    denominator is empty (a class absent from the group has no FNR)."""
    counts = np.asarray(counts, dtype=float)
    tn, fp, fn, tp = counts[..., 0, 0], counts[..., 0, 1], counts[..., 1, 0], counts[..., 1, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = np.where(fp + tn > 0, fp / (fp + tn), np.nan)
        fnr = np.where(fn + tp > 0, fn / (fn + tp), np.nan)
        selection = (tp + fp) / (tn + fp + fn + tp)
    out = {}
    for i, cls in enumerate(classes):
        out[f"fpr_ovr{KEY_SEP}{cls}"] = fpr[..., i]
        out[f"fnr_ovr{KEY_SEP}{cls}"] = fnr[..., i]
        out[f"selection_rate_ovr{KEY_SEP}{cls}"] = selection[..., i]
    return out


def by_group_values(frame: MetricFrame, order: list[str], task: TaskData) -> dict[str, np.ndarray]:
    """The MetricFrame's ``by_group`` as metric key -> (1, groups) float arrays, in ``order``."""
    by_group = frame.by_group.reindex(order)
    values = {k: by_group[k].to_numpy(dtype=float)[None, :] for k in by_group.columns if k != "ovr_counts"}
    if "ovr_counts" in by_group.columns:
        values.update({k: v[None, :] for k, v in ovr_rates(np.stack(list(by_group["ovr_counts"])),
                                                            task.classes).items()})
    return derive_aggregates(values, task)


def regression_metric_frame(task: TaskData, rows: np.ndarray, groups: np.ndarray) -> MetricFrame:
    metrics = {"mae": skm.mean_absolute_error,
               "mean_error": lambda y_true, y_pred: float(np.mean(np.asarray(y_pred) - np.asarray(y_true)))}
    return MetricFrame(metrics=metrics, y_true=task.y_true[rows], y_pred=task.y_pred[rows],
                       sensitive_features=pd.Series(groups, name="group"))


def rate_support(task: TaskData, positives: np.ndarray) -> dict[str, np.ndarray]:
    """Rows behind each error rate, per group: FNR of class C rests on the group's rows of class C,
    FPR on its other rows.  ``positives`` is (groups, classes) true-label counts."""
    negatives = positives.sum(axis=1, keepdims=True) - positives
    out = {}
    for i, cls in enumerate(task.classes):
        out[f"fnr_ovr{KEY_SEP}{cls}"] = positives[:, i]
        out[f"fpr_ovr{KEY_SEP}{cls}"] = negatives[:, i]
    positive = getattr(task, "positive_class", None)
    if positive is not None:
        out["fnr"], out["fpr"] = out[f"fnr_ovr{KEY_SEP}{positive}"], out[f"fpr_ovr{KEY_SEP}{positive}"]
    return out


def thin_cells(task: TaskData, positives: np.ndarray, min_support: int) -> dict[str, np.ndarray]:
    """Per rate key, the groups where the rate rests on 1..min_support-1 rows: computed and shown,
    but as unjudgeable as a small group, so it enters no average and no gap (and every gap that
    loses it says so).  Without this a class with five members in a group (70+ faces of one race)
    swings a multi-class equalized-odds gap to 1.0.  Zero rows is "undefined" (NaN), not thin."""
    return {k: (s > 0) & (s < min_support) for k, s in rate_support(task, positives).items()
            if KEY_SEP in k}


def mask_thin_rates(values: dict[str, np.ndarray], task: TaskData, positives: np.ndarray,
                    min_support: int) -> dict[str, np.ndarray]:
    """``values`` with the thin cells (``thin_cells``) set to NaN."""
    out = dict(values)
    for key, thin in thin_cells(task, positives, min_support).items():
        if key in out:
            out[key] = np.where(thin, np.nan, out[key])
    return out


def mask_single_class_f1(values: dict[str, np.ndarray], positives: np.ndarray) -> dict[str, np.ndarray]:
    """Macro-F1 is not applicable (NaN) in groups holding one true class, replicates included."""
    out = dict(values)
    if "macro_f1" in out:
        out["macro_f1"] = np.where((positives > 0).sum(axis=1) < 2, np.nan, out["macro_f1"])
    return out


def derive_aggregates(values: dict[str, np.ndarray], task: TaskData) -> dict[str, np.ndarray]:
    """Add the task-level ``fpr``/``fnr`` (and ``selection_rate`` for binary tasks).

    Binary: the rates of the positive class (gender: Female, so FPR = males predicted female).
    Multi-class: the macro average of the one-vs-rest rates over classes where they are defined.
    Works on arrays of any shape (point estimates and bootstrap replicates alike).
    """
    out = dict(values)
    if task.kind != "classification":
        return out
    if task.positive_class is not None:
        pos = task.positive_class
        out["fpr"] = values[f"fpr_ovr{KEY_SEP}{pos}"]
        out["fnr"] = values[f"fnr_ovr{KEY_SEP}{pos}"]
        out["selection_rate"] = values[f"selection_rate_ovr{KEY_SEP}{pos}"]
        return out
    for rate in ("fpr", "fnr"):
        stacked = np.stack([values[f"{rate}_ovr{KEY_SEP}{c}"] for c in task.classes])
        with np.errstate(invalid="ignore"), _quiet():
            out[rate] = np.nanmean(stacked, axis=0)
    return out


def reported_keys(task: TaskData, keys) -> list[str]:
    """Metric keys written to the tables, in reading order (binary tasks skip the mirror-image
    per-class rates: Male's FPR is Female's FNR)."""
    keys = list(keys)
    if task.kind == "regression":
        return [k for k in ("mae", "mean_error") if k in keys]
    order = ["accuracy", "macro_f1", "fpr", "fnr"]
    if task.positive_class is not None:
        order += ["selection_rate"]
    order += [k for k in ("roc_auc", "ece") if k in keys]
    if task.positive_class is None:
        for prefix in ("fpr_ovr", "fnr_ovr", "selection_rate_ovr"):
            order += [f"{prefix}{KEY_SEP}{c}" for c in task.classes]
    return [k for k in order if k in keys]


class _quiet:
    """Silence numpy's 'mean of empty slice' (an all-NaN column is a legitimate NaN here)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
