"""``audit_predictions``: group metrics, gaps, calibration and confusion matrices with bootstrap CIs."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from facefair.audit import bootstrap as B
from facefair.audit.calibration import reliability_bins
from facefair.audit.config import (ALL, CALIBRATION_COLUMNS, CONFUSION_COLUMNS, GAP_COLUMNS, GROUP_COLUMNS,
                                   OVERALL, AuditConfig, AuditResult, TaskInfo)
from facefair.audit.gaps import DEFINITIONS as GAP_DEFINITIONS
from facefair.audit.gaps import GAP_BASIS as _GAP_BASIS
from facefair.audit.gaps import gap_inputs, gap_values, worst_and_best
from facefair.audit.groups import SEPARATOR, TaskData, _present, attribute_values, detect_tasks, group_order
from facefair.audit.metrics import (KEY_SEP, by_group_values, classification_metric_frame, derive_aggregates,
                                    mask_single_class_f1, mask_thin_rates, rate_support, regression_metric_frame,
                                    reported_keys, split_key, thin_cells)

METRIC_DEFINITIONS = {
    "accuracy": "Share of rows whose predicted label equals the true label (sklearn accuracy_score).",
    "macro_f1": "Unweighted mean F1 over the classes present in the group's true labels (sklearn f1_score with "
                "those labels). Not applicable (n/a, NaN) in a group holding one true class (gender by gender, "
                "every race x gender cell): there it would be that one class's F1, which reads higher than the "
                "group's accuracy and says nothing about fairness; such groups stay out of macro_f1_difference.",
    "fpr": "Binary task: false positive rate of the positive class (gender: positive = Female, so FPR = share "
           "of males predicted female). Multi-class: mean over classes of the one-vs-rest FPR (fpr_ovr), "
           "over classes where it is defined and not thin (see thin_cell).",
    "fnr": "Binary task: false negative rate of the positive class (gender: share of females predicted male). "
           "Multi-class: mean over classes of the one-vs-rest FNR (fnr_ovr) where defined and not thin.",
    "selection_rate": "Binary task: share of rows predicted as the positive class (fairlearn selection_rate).",
    "fpr_ovr": "For class C: share of rows whose true label is not C that are predicted C (fairlearn "
               "false_positive_rate on the one-vs-rest labels). NaN where the group has no such rows.",
    "fnr_ovr": "For class C: share of rows whose true label is C that are predicted something else. NaN where "
               "the group has no row of class C.",
    "selection_rate_ovr": "For class C: share of rows predicted C.",
    "roc_auc": "ROC-AUC of the predicted probabilities (sklearn roc_auc_score); binary: of the positive class; "
               "multi-class: mean one-vs-rest AUC over classes with both members and non-members in the group.",
    "ece": "Expected calibration error of the top label: bins of equal width over the probability given to the "
           "predicted label; sum over bins of (bin share) x |bin accuracy - bin mean probability|.",
    "mae": "Mean absolute error of the exact age in years (sklearn mean_absolute_error).",
    "mean_error": "Mean of (predicted - true) age in years: positive means the model over-estimates age.",
}


def _definitions(config: AuditConfig) -> dict[str, str]:
    level = f"{config.ci_level:.0%}"
    return {
        **METRIC_DEFINITIONS, **GAP_DEFINITIONS,
        "n": "Rows of the group with both a true label and a prediction for the task.",
        "flagged": f"True when n < min_group_size ({config.min_group_size}): the group is shown but is too "
                   "small to judge, and it is left out of every gap.",
        "support": "Rows an error rate rests on: the group's negatives for an FPR (gender: its men), its positives "
                   "for an FNR (its women); for other metrics the group's n.",
        "thin_cell": f"True when an error rate of a large-enough group rests on 1 to {config.min_group_size - 1} "
                     "rows (support < min_group_size): the rate is computed and shown with its CI, but is too thin "
                     "to judge, so it is left out of every gap; each gap that loses it names it in excluded_cells "
                     "and is marked complete = False (computed over fewer cells than it should). A rate with no "
                     "row at all (FNR of a group without women) is undefined: NaN, never 0.",
        "complete": "False when a gap lost a thin error-rate cell of a judged group (see excluded_cells): its value "
                    "is over the remaining cells only, and the summary never calls it the largest.",
        "ci": f"{level} percentile bootstrap interval from {config.n_boot} resamples (seed {config.seed}); rows "
              "are resampled within each group and the gaps are recomputed on every resample. Replicates where "
              "a metric is undefined are ignored. Gaps that take a max or a min over groups are biased upward "
              "under resampling, so their interval can sit above the point estimate.",
        "parity": "Equalized-odds and demographic-parity differences are not computed for an attribute that "
                  "contains the task's own label (race classification across race groups): there the "
                  "differences are large by construction.",
        "overall": f"Rows with attribute '{OVERALL}', group '{ALL}': every labelled row of the task, including "
                   "rows whose sensitive attributes are unknown.",
    }


GAP_BASIS_NAMES = set(_GAP_BASIS)


class _Collector:
    def __init__(self, replicates: Optional[dict] = None) -> None:
        self.replicates = replicates
        self.groups: list[dict] = []
        self.gaps: list[dict] = []
        self.calibration: list[dict] = []
        self.confusion: list[dict] = []


def audit_predictions(df: pd.DataFrame, config: Optional[AuditConfig] = None, source: str = "<DataFrame>",
                      replicates: Optional[dict] = None) -> AuditResult:
    """Audit a predictions table (see ``docs/audit.md`` for the columns it reads).

    ``replicates``, when given, is filled with every group metric's bootstrap replicates, keyed
    ``(task, attribute, group, metric key)``, for comparisons that need more than the interval
    (the transfer audit's difference between two datasets)."""
    config = config or AuditConfig()
    notes: list[str] = []
    tasks = detect_tasks(df, config.tasks, config.positive_classes, notes)
    if not tasks:
        raise ValueError("the table has no task to audit: it needs T_true and T_pred columns "
                         "(gender, race, age_group or age) with at least one labelled, predicted row")
    attributes = attribute_values(df, config.attributes, config.intersections, notes)
    if not attributes:
        notes.append("No sensitive attribute column (race, gender, age_group) was found: only overall "
                     "figures are reported.")
    out = _Collector(replicates)
    for task in tasks:
        scored = None
        if task.proba is not None:
            scored = np.isfinite(task.proba).all(axis=1) & np.isfinite(task.confidence())
            missing = int((task.valid & ~scored).sum())
            if missing:
                notes.append(f"Task {task.name!r}: {missing} rows lack a probability for their predicted label, "
                             "so ROC-AUC and ECE are skipped for groups that contain them.")
        audited = [(OVERALL, np.full(len(df), ALL, dtype=object))] + list(attributes.items())
        for attribute, values in audited:
            _audit_attribute(task, attribute, values, scored, config, out, notes)
    flagged = {(r["task"], r["attribute"], r["group"]) for r in out.groups if r["flagged"]}
    if flagged:
        notes.append(f"{len(flagged)} task/group combinations have fewer than {config.min_group_size} labelled "
                     "rows: they are shown, marked too small to judge, and left out of every gap.")
    result = AuditResult(
        config=config, source=source, n_rows=len(df),
        tasks=[TaskInfo(t.name, t.kind, t.classes, t.n, t.proba is not None, t.positive_class) for t in tasks],
        attributes=list(attributes),
        group_metrics=pd.DataFrame(out.groups, columns=GROUP_COLUMNS),
        gaps=pd.DataFrame(out.gaps, columns=GAP_COLUMNS),
        calibration=pd.DataFrame(out.calibration, columns=CALIBRATION_COLUMNS),
        confusion=pd.DataFrame(out.confusion, columns=CONFUSION_COLUMNS),
        notes=notes, definitions=_definitions(config))
    from facefair.audit.summary import plain_summary
    result.summary = plain_summary(result)
    return result


def _parity_applies(task: TaskData, attribute: str) -> bool:
    return task.name not in attribute.split(SEPARATOR)


def _audit_attribute(task: TaskData, attribute: str, values: np.ndarray, scored: Optional[np.ndarray],
                     config: AuditConfig, out: _Collector, notes: list[str]) -> None:
    rows = np.flatnonzero(task.valid & _present(values))
    if len(rows) == 0:
        notes.append(f"Task {task.name!r} has no labelled row with a known {attribute}; nothing to report there.")
        return
    row_groups = values[rows]
    order = group_order(attribute, row_groups)
    classification = task.kind == "classification"
    use_scores = classification and scored is not None and bool(scored[rows].all())
    if classification:
        frame = classification_metric_frame(task, rows, row_groups, config.n_bins, scored)
    else:
        frame = regression_metric_frame(task, rows, row_groups)
    point = by_group_values(frame, order, task)
    sizes = pd.Series(row_groups).value_counts().reindex(order).to_numpy()
    flagged = sizes < config.min_group_size

    replicates = _bootstrap(task, attribute, rows, row_groups, order, use_scores, config)
    if not replicates:
        replicates = {k: np.empty((0, len(order))) for k in point}
    support: dict[str, np.ndarray] = {}
    thin: dict[str, np.ndarray] = {}
    shown, shown_reps = point, replicates
    if classification:
        true_idx = task.indices(task.y_true)[rows]
        positives = np.stack([np.bincount(true_idx[row_groups == g], minlength=len(task.classes)) for g in order])
        support = rate_support(task, positives)
        thin = {k: v & ~flagged for k, v in thin_cells(task, positives, config.min_group_size).items()}
        # Judged values (thin cells NaN) feed the averages and the gaps; the shown ones keep each
        # thin cell's own value and CI, marked, so nothing is hidden.
        judged = mask_single_class_f1(derive_aggregates(
            mask_thin_rates(point, task, positives, config.min_group_size), task), positives)
        judged_reps = mask_single_class_f1(derive_aggregates(
            mask_thin_rates(replicates, task, positives, config.min_group_size), task), positives)
        own = [k for k in point if KEY_SEP in k and not k.startswith("selection_rate")]
        if task.positive_class is not None:
            own += ["fpr", "fnr"]
        raw_reps = derive_aggregates(replicates, task)
        shown = {**judged, **{k: point[k] for k in own}}
        shown_reps = {**judged_reps, **{k: raw_reps[k] for k in own}}
        point, replicates = judged, judged_reps
    else:
        replicates = derive_aggregates(replicates, task)
    keys = reported_keys(task, shown)
    for key in keys:
        low, high = B.percentile_interval(shown_reps[key], config.ci_level)
        name, cls = split_key(key)
        key_support = support.get(key, sizes)
        key_thin = thin.get(key, thin.get(f"{name}_ovr{KEY_SEP}{task.positive_class}") if key in ("fpr", "fnr")
                            else None)
        for i, group in enumerate(order):
            if out.replicates is not None:
                out.replicates[(task.name, attribute, group, key)] = shown_reps[key][:, i]
            out.groups.append({"task": task.name, "attribute": attribute, "group": group, "metric": name,
                               "value": float(shown[key][0, i]), "ci_low": float(low[i]), "ci_high": float(high[i]),
                               "n": int(sizes[i]), "flagged": bool(flagged[i]), "class": cls,
                               "support": int(key_support[i]),
                               "thin_cell": bool(key_thin[i]) if key_thin is not None else False})
    if attribute != OVERALL:
        _gaps(task, attribute, order, point, replicates, flagged, thin, support, config, out)
    _tables(task, attribute, rows, row_groups, order, flagged, use_scores, config, out)


def _bootstrap(task: TaskData, attribute: str, rows: np.ndarray, row_groups: np.ndarray, order: list[str],
               use_scores: bool, config: AuditConfig) -> dict[str, np.ndarray]:
    if config.n_boot == 0:
        return {}
    true_idx, pred_idx = (task.indices(task.y_true), task.indices(task.y_pred)) if task.kind == "classification" \
        else (None, None)
    confidence = task.confidence() if use_scores else None
    columns: dict[str, np.ndarray] = {}
    for gi, group in enumerate(order):
        idx = rows[row_groups == group]
        rng = B.stream(config.seed, task.name, attribute, group)
        chunks = []
        for weights in B.weight_chunks(rng, len(idx), config.n_boot):
            if task.kind == "classification":
                chunks.append(B.classification_replicates(
                    weights, true_idx[idx], pred_idx[idx], task.classes,
                    proba=task.proba[idx] if use_scores else None, prob_classes=task.prob_classes,
                    positive=task.positive_class, confidence=confidence[idx] if use_scores else None,
                    n_bins=config.n_bins))
            else:
                chunks.append(B.regression_replicates(weights, task.y_true[idx], task.y_pred[idx]))
        for key in chunks[0]:
            columns.setdefault(key, np.full((config.n_boot, len(order)), np.nan))[:, gi] = \
                np.concatenate([c[key] for c in chunks])
    return columns


def _cell_label(task: TaskData, key: str, group: str, support: int) -> str:
    name, cls = split_key(key)
    rate = name.split("_")[0].upper()
    what = rate if task.positive_class is not None else f"{rate} of {cls}"
    return f"{what} in {group.replace(SEPARATOR, ' / ')} (n={support})"


def _gaps(task: TaskData, attribute: str, order: list[str], point: dict, replicates: dict, flagged: np.ndarray,
          thin: dict[str, np.ndarray], support: dict[str, np.ndarray], config: AuditConfig, out: _Collector) -> None:
    eligible = ~flagged
    kept = [g for g, e in zip(order, eligible) if e]
    excluded = ", ".join(g for g, f in zip(order, flagged) if f)
    parity = task.kind == "classification" and _parity_applies(task, attribute)
    point_gaps = gap_values({k: v[:, eligible] for k, v in point.items()}, task.kind, task.classes,
                            task.positive_class, parity)
    boot_gaps = gap_values({k: v[:, eligible] for k, v in replicates.items()}, task.kind, task.classes,
                           task.positive_class, parity)
    eligible_point = {k: v[:, eligible] for k, v in point.items()}
    note = ""
    if len(kept) < 2:
        note = f"fewer than two groups with n >= {config.min_group_size}: no gap can be judged"
    elif excluded:
        note = f"groups with n < {config.min_group_size} left out"
    for (metric, cls), value in point_gaps.items():
        low, high = B.percentile_interval(boot_gaps[(metric, cls)][:, None], config.ci_level) if len(
            boot_gaps[(metric, cls)]) else (np.array([np.nan]), np.array([np.nan]))
        worst, best = worst_and_best(metric, task.kind, eligible_point, kept) if len(kept) >= 2 else (None, None)
        extra = note
        lost = [_cell_label(task, key, g, int(support[key][i])) for key in gap_inputs(
            metric, cls, task.classes, task.positive_class) if key in thin
            for i, g in enumerate(order) if thin[key][i]]
        if lost:
            extra = "; ".join(x for x in (extra, f"incomplete: left out as too thin (n < {config.min_group_size}): "
                                                 + ", ".join(lost)) if x)
        elif worst is None and len(kept) >= 2 and not np.isnan(value[0]) and metric in GAP_BASIS_NAMES:
            extra = "; ".join(x for x in (extra, "every group at the same value: no worst group") if x)
        if metric == "macro_f1_difference" and np.isnan(value[0]) and len(kept) >= 2:
            extra = "; ".join(x for x in (extra, "not applicable: macro-F1 needs two true classes in a group") if x)
        if metric in ("equalized_odds_difference", "demographic_parity_difference") and task.positive_class is None:
            per_class = {c: float(v[0]) for (m, c), v in point_gaps.items() if m == f"{metric}_ovr"}
            defined = {c: v for c, v in per_class.items() if not np.isnan(v)}
            if defined:
                top = max(defined, key=defined.get)
                extra = "; ".join(x for x in (note, f"max over classes one-vs-rest, largest for {top}") if x)
        out.gaps.append({"task": task.name, "attribute": attribute, "metric": metric, "class": cls,
                         "value": float(value[0]), "ci_low": float(low[0]), "ci_high": float(high[0]),
                         "n_groups": len(kept), "worst_group": worst, "best_group": best,
                         "excluded_groups": excluded, "excluded_cells": ", ".join(lost), "complete": not lost,
                         "note": extra})


def _tables(task: TaskData, attribute: str, rows: np.ndarray, row_groups: np.ndarray, order: list[str],
            flagged: np.ndarray, use_scores: bool, config: AuditConfig, out: _Collector) -> None:
    if task.kind != "classification":
        return
    confidence = task.confidence() if use_scores else None
    for group, is_flagged in zip(order, flagged):
        idx = rows[row_groups == group]
        matrix = confusion_matrix(task.y_true[idx].astype(str), task.y_pred[idx].astype(str),
                                  labels=list(task.classes))
        for i, true in enumerate(task.classes):
            for j, pred in enumerate(task.classes):
                out.confusion.append({"task": task.name, "attribute": attribute, "group": group, "true": true,
                                      "pred": pred, "count": int(matrix[i, j])})
        if confidence is None:
            continue
        bins = reliability_bins(confidence[idx], task.y_true[idx] == task.y_pred[idx], config.n_bins)
        for record in bins.to_dict("records"):
            out.calibration.append({"task": task.name, "attribute": attribute, "group": group, **record,
                                    "flagged": bool(is_flagged)})
