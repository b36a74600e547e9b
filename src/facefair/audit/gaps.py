"""Summary gaps between groups, as functions of the per-group metric arrays.

Every function takes arrays shaped (replicates, groups) and returns one value per replicate, so
the point estimate (one "replicate": the MetricFrame's ``by_group``) and the bootstrap share one
definition.  Groups whose metric is undefined (NaN) are skipped; a gap needs two groups.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import numpy as np

from facefair.audit.metrics import KEY_SEP

DEFINITIONS = {
    "degree_of_bias": "Degree of bias (FineFACE): population standard deviation (ddof=0) of the group "
                      "accuracies (exact age: of the group MAEs).",
    "accuracy_difference": "Largest minus smallest group accuracy (fairlearn MetricFrame.difference).",
    "accuracy_max_min_ratio": "Largest group accuracy divided by the smallest (>= 1; 1 is parity).",
    "worst_group_accuracy": "Smallest group accuracy.",
    "skewed_error_ratio": "Skewed error ratio: largest group error rate (1 - accuracy) divided by the "
                          "smallest; infinite when some group makes no error.",
    "macro_f1_difference": "Largest minus smallest group macro-F1.",
    "fpr_difference": "Largest minus smallest group FPR (binary: of the positive class; multi-class: of the "
                      "macro-averaged one-vs-rest FPR).",
    "fnr_difference": "Largest minus smallest group FNR (as for FPR).",
    "equalized_odds_difference": "Binary: fairlearn's equalized_odds_difference (worst case): the larger of the "
                                 "between-group TPR and FPR differences for the positive class. Multi-class: "
                                 "computed one-vs-rest for every class and the maximum over classes is reported "
                                 "(per-class values in the *_ovr rows). Rates undefined in a group (no positives "
                                 "or no negatives there) leave that group out for that rate.",
    "demographic_parity_difference": "Binary: fairlearn's demographic_parity_difference: largest minus smallest "
                                     "group selection rate P(pred = positive class). Multi-class: the same for "
                                     "every class one-vs-rest, maximum over classes (per-class in *_ovr rows).",
    "roc_auc_difference": "Largest minus smallest group ROC-AUC (macro one-vs-rest for multi-class).",
    "ece_difference": "Largest minus smallest group expected calibration error.",
    "mae_difference": "Largest minus smallest group mean absolute error (years).",
    "mae_max_min_ratio": "Largest group MAE divided by the smallest.",
    "worst_group_mae": "Largest group MAE (years).",
    "mean_error_difference": "Largest minus smallest group mean signed error (predicted - true years).",
}


def _count(x: np.ndarray) -> np.ndarray:
    return (~np.isnan(x)).sum(axis=-1)


def _reduce(fn: Callable, x: np.ndarray, need: int = 2) -> np.ndarray:
    if x.shape[-1] == 0:
        return np.full(x.shape[:-1], np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = fn(x)
    return np.where(_count(x) >= need, value, np.nan)


def spread(x: np.ndarray) -> np.ndarray:
    return _reduce(lambda v: np.nanmax(v, axis=-1) - np.nanmin(v, axis=-1), x)


def ratio(x: np.ndarray) -> np.ndarray:
    def fn(v):
        hi, lo = np.nanmax(v, axis=-1), np.nanmin(v, axis=-1)
        return np.where(lo > 0, hi / np.where(lo > 0, lo, 1), np.where(hi > 0, np.inf, np.nan))
    return _reduce(fn, x)


def std(x: np.ndarray) -> np.ndarray:
    return _reduce(lambda v: np.nanstd(v, axis=-1), x)


# "Worst group" needs a comparison too: with one judged group it would just be that group's value.
def smallest(x: np.ndarray) -> np.ndarray:
    return _reduce(lambda v: np.nanmin(v, axis=-1), x)


def largest(x: np.ndarray) -> np.ndarray:
    return _reduce(lambda v: np.nanmax(v, axis=-1), x)


def _fmax(arrays: list[np.ndarray]) -> np.ndarray:
    out = arrays[0]
    for a in arrays[1:]:
        out = np.fmax(out, a)  # NaN only where every input is NaN
    return out


def gap_values(values: dict[str, np.ndarray], kind: str, classes: tuple[str, ...], positive: Optional[str],
               parity: bool) -> dict[tuple[str, Optional[str]], np.ndarray]:
    """(metric, class) -> one value per replicate; ``values[key]`` is (replicates, eligible groups).

    ``parity`` False leaves out equalized odds and demographic parity (see ``audit.core``).
    """
    out: dict[tuple[str, Optional[str]], np.ndarray] = {}
    if kind == "regression":
        mae = values["mae"]
        out[("degree_of_bias", None)] = std(mae)
        out[("mae_difference", None)] = spread(mae)
        out[("mae_max_min_ratio", None)] = ratio(mae)
        out[("worst_group_mae", None)] = largest(mae)
        out[("mean_error_difference", None)] = spread(values["mean_error"])
        return out
    accuracy = values["accuracy"]
    out[("degree_of_bias", None)] = std(accuracy)
    out[("accuracy_difference", None)] = spread(accuracy)
    out[("accuracy_max_min_ratio", None)] = ratio(accuracy)
    out[("worst_group_accuracy", None)] = smallest(accuracy)
    out[("skewed_error_ratio", None)] = ratio(1 - accuracy)
    out[("macro_f1_difference", None)] = spread(values["macro_f1"])
    out[("fpr_difference", None)] = spread(values["fpr"])
    out[("fnr_difference", None)] = spread(values["fnr"])
    if parity:
        # Binary tasks: the positive class alone (the other class gives the same numbers).
        scored = [positive] if positive is not None else list(classes)
        eod = {c: np.fmax(spread(values[f"fpr_ovr{KEY_SEP}{c}"]), spread(values[f"fnr_ovr{KEY_SEP}{c}"]))
               for c in scored}
        dpd = {c: spread(values[f"selection_rate_ovr{KEY_SEP}{c}"]) for c in scored}
        out[("equalized_odds_difference", None)] = _fmax(list(eod.values()))
        out[("demographic_parity_difference", None)] = _fmax(list(dpd.values()))
        if positive is None:
            for c in scored:
                out[("equalized_odds_difference_ovr", c)] = eod[c]
                out[("demographic_parity_difference_ovr", c)] = dpd[c]
    if "roc_auc" in values:
        out[("roc_auc_difference", None)] = spread(values["roc_auc"])
    if "ece" in values:
        out[("ece_difference", None)] = spread(values["ece"])
    return out


#: Which group metric a gap is about, and whether higher is better (to name worst/best groups).
GAP_BASIS = {
    "degree_of_bias": ("accuracy", True), "accuracy_difference": ("accuracy", True),
    "accuracy_max_min_ratio": ("accuracy", True), "worst_group_accuracy": ("accuracy", True),
    "skewed_error_ratio": ("accuracy", True), "macro_f1_difference": ("macro_f1", True),
    "fpr_difference": ("fpr", False), "fnr_difference": ("fnr", False),
    "roc_auc_difference": ("roc_auc", True), "ece_difference": ("ece", False),
    "mae_difference": ("mae", False), "mae_max_min_ratio": ("mae", False), "worst_group_mae": ("mae", False),
}


def gap_inputs(metric: str, cls: Optional[str], classes: tuple[str, ...], positive: Optional[str]) -> list[str]:
    """The error-rate cells (metric keys) a gap is computed from; a gap that loses one of them in
    some group (a thin cell) is computed over fewer cells than it should and says so."""
    scored = [positive] if positive is not None else list(classes)
    rates = {"fpr_difference": ("fpr_ovr",), "fnr_difference": ("fnr_ovr",),
             "equalized_odds_difference": ("fpr_ovr", "fnr_ovr"),
             "equalized_odds_difference_ovr": ("fpr_ovr", "fnr_ovr")}.get(metric, ())
    if metric == "equalized_odds_difference_ovr":
        scored = [cls]
    return [f"{rate}{KEY_SEP}{c}" for c in scored for rate in rates]


def worst_and_best(metric: str, kind: str, point: dict[str, np.ndarray], groups: list[str]
                   ) -> tuple[Optional[str], Optional[str]]:
    """The groups at the bad and the good end of a gap's metric; groups tied at an end are all
    named (", "-joined), and a gap with every group tied names none: it has no worst group."""
    basis = GAP_BASIS.get(metric)
    if metric == "degree_of_bias" and kind == "regression":
        basis = ("mae", False)
    if basis is None or basis[0] not in point:
        return None, None
    values = np.asarray(point[basis[0]], dtype=float).reshape(-1)
    if (~np.isnan(values)).sum() < 2:
        return None, None
    low_value, high_value = np.nanmin(values), np.nanmax(values)
    if low_value == high_value:
        return None, None
    low = ", ".join(g for g, v in zip(groups, values) if v == low_value)
    high = ", ".join(g for g, v in zip(groups, values) if v == high_value)
    return (low, high) if basis[1] else (high, low)
