"""Paired comparison of runs evaluated on the same test rows (``facefair audit --compare``).

Runs scored on the same faces are paired data: judging them by overlapping marginal intervals
throws the pairing away and hides real differences.  Here every run is re-scored on the *same*
bootstrap resamples of the rows (one table of draw counts, shared by every run), so the
difference of a metric or a gap between two methods has its own interval, and accuracy-type
differences get an exact McNemar test on the discordant rows.

Several seeds per method: a method's value on a resample is the **mean over its seeds** of the
metric computed on that resample.  Its paired interval therefore covers the sampling of test rows
for the seed-averaged method (the quantity a user deploying "this method, some seed" cares
about); the training noise between seeds is shown next to it as the seeds' std and min-max, so a
difference smaller than that spread is said to be within seed noise instead of being sold as an
effect.  For accuracy the seed mean of the accuracies equals the accuracy of each row's
correctness averaged over the seeds, so nothing is lost by averaging metrics.

Every metric is the audit's own definition (``bootstrap.confusion_metrics``, ``gaps.gap_values``,
the same small-group and thin-cell rules computed once on the true labels, which all runs
share).  ROC-AUC, ECE and ratio gaps (which are infinite when a group makes no error) are not
compared here; ``facefair audit`` reports them per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefair.audit import bootstrap as B
from facefair.audit.config import OVERALL, AuditConfig
from facefair.audit.gaps import gap_values
from facefair.audit.groups import TaskData, _present
from facefair.audit.metrics import derive_aggregates, mask_single_class_f1, mask_thin_rates

#: Compared metrics and whether higher is better.  Overall metrics come from every labelled row,
#: gaps from the groups of one attribute.
OVERALL_METRICS = {"classification": {"accuracy": True, "macro_f1": True},
                   "regression": {"mae": False}}
BINARY_OVERALL = {"fpr": False, "fnr": False}
GAP_METRICS = {
    "classification": {"worst_group_accuracy": True, "accuracy_difference": False, "degree_of_bias": False,
                       "equalized_odds_difference": False, "demographic_parity_difference": False,
                       "fpr_difference": False, "fnr_difference": False, "macro_f1_difference": False},
    "regression": {"worst_group_mae": False, "mae_difference": False, "degree_of_bias": False},
}
#: Per-row correct/incorrect metrics, where the exact McNemar test applies (one run per side).
MCNEMAR_METRICS = {"accuracy"}


@dataclass
class Scored:
    """One metric of one run: point estimate and one value per shared resample."""
    point: float
    replicates: np.ndarray  # (n_boot,)


def shared_weights(n_rows: int, n_boot: int, seed: int) -> np.ndarray:
    """Draw counts (n_boot, n_rows), the same for every run: the pairing."""
    if n_boot == 0:
        return np.zeros((0, n_rows), dtype=np.float32)
    chunks = list(B.weight_chunks(B.stream(seed, "paired"), n_rows, n_boot))
    return np.concatenate(chunks)


def _group_confusion(weights: np.ndarray, true_idx: np.ndarray, pred_idx: np.ndarray, groups: np.ndarray,
                     n_groups: int, k: int) -> np.ndarray:
    """(replicates, groups, k, k) weighted confusion counts; rows with group -1 are left out."""
    keep = groups >= 0
    cells = np.zeros((len(true_idx), n_groups * k * k), dtype=np.float32)
    rows = np.flatnonzero(keep)
    cells[rows, groups[rows] * k * k + true_idx[rows] * k + pred_idx[rows]] = 1.0
    return (weights @ cells).reshape(len(weights), n_groups, k, k)


def _group_codes(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[str]]:
    known = valid & _present(values)
    order = sorted(set(values[known]))
    lookup = {g: i for i, g in enumerate(order)}
    codes = np.array([lookup.get(v, -1) if k else -1 for v, k in zip(values, known)], dtype=np.int64)
    return codes, order


def classification_scores(task: TaskData, pred: np.ndarray, attribute: str, values: np.ndarray,
                          weights: np.ndarray, config: AuditConfig, parity: bool) -> dict[str, Scored]:
    """Every compared metric (overall rows: ``attribute == OVERALL``) for one run's predictions
    ``pred`` (labels, aligned with the shared truth in ``task``)."""
    valid = task.valid & _present(pred)
    true_idx = task.indices(task.y_true)
    pred_idx = task.indices(pred)
    valid &= (true_idx >= 0) & (pred_idx >= 0)
    codes, order = _group_codes(values, valid)
    k = len(task.classes)
    unit = np.ones((1, len(true_idx)), dtype=np.float32)
    stacked = np.concatenate([unit, weights]) if len(weights) else unit
    counts = _group_confusion(stacked, np.where(valid, true_idx, 0), np.where(valid, pred_idx, 0), codes,
                              len(order), k)
    metrics = B.confusion_metrics(counts, task.classes)  # (1 + n_boot, groups) each
    positives = counts[0].sum(axis=-1)  # (groups, k) true-label counts on the real rows
    sizes = positives.sum(axis=1)
    metrics = derive_aggregates(mask_thin_rates(metrics, task, positives, config.min_group_size), task)
    metrics = mask_single_class_f1(metrics, positives)
    out: dict[str, Scored] = {}
    if attribute == OVERALL:
        wanted = dict(OVERALL_METRICS["classification"])
        if task.positive_class is not None:
            wanted.update(BINARY_OVERALL)
        for name in wanted:
            out[name] = Scored(float(metrics[name][0, 0]), metrics[name][1:, 0])
        return out
    eligible = sizes >= config.min_group_size
    if eligible.sum() < 2:
        return out
    judged = {key: v[:, eligible] for key, v in metrics.items()}
    gaps = gap_values(judged, "classification", task.classes, task.positive_class, parity)
    for name in GAP_METRICS["classification"]:
        if (name, None) in gaps:
            values_ = gaps[(name, None)]
            out[name] = Scored(float(values_[0]), values_[1:])
    return out


def regression_scores(task: TaskData, pred: np.ndarray, attribute: str, values: np.ndarray,
                      weights: np.ndarray, config: AuditConfig) -> dict[str, Scored]:
    valid = task.valid & ~np.isnan(pred)
    codes, order = _group_codes(values, valid)
    unit = np.ones((1, len(pred)), dtype=np.float32)
    stacked = np.concatenate([unit, weights]) if len(weights) else unit
    y_true, y_pred = np.where(valid, task.y_true, 0.0), np.where(valid, pred, 0.0)
    per_group = {"mae": [], "mean_error": []}
    sizes = []
    for g in range(len(order)):
        rows = codes == g
        sizes.append(int(rows.sum()))
        with np.errstate(invalid="ignore", divide="ignore"):  # a group a resample misses: NaN there
            reps = B.regression_replicates(stacked[:, rows], y_true[rows], y_pred[rows])
        for key in per_group:
            per_group[key].append(reps[key])
    arrays = {key: np.stack(v, axis=1) for key, v in per_group.items()}  # (1 + n_boot, groups)
    if attribute == OVERALL:
        return {"mae": Scored(float(arrays["mae"][0, 0]), arrays["mae"][1:, 0])}
    eligible = np.array(sizes) >= config.min_group_size
    if eligible.sum() < 2:
        return {}
    gaps = gap_values({k: v[:, eligible] for k, v in arrays.items()}, "regression", (), None, False)
    return {name: Scored(float(gaps[(name, None)][0]), gaps[(name, None)][1:])
            for name in GAP_METRICS["regression"] if (name, None) in gaps}


def correctness(task: TaskData, pred: np.ndarray) -> np.ndarray:
    """Per row: 1 correct, 0 wrong, NaN where the row is not scored."""
    valid = task.valid & _present(pred)
    out = np.full(len(pred), np.nan)
    out[valid] = (task.y_true[valid] == pred[valid]).astype(float)
    return out


def mcnemar_p(reference_correct: np.ndarray, method_correct: np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar p-value (statsmodels) on the rows both runs scored; returns (p, b, c) with b the
    rows only the reference got right and c the rows only the method got right."""
    from statsmodels.stats.contingency_tables import mcnemar
    both = ~np.isnan(reference_correct) & ~np.isnan(method_correct)
    r, m = reference_correct[both].astype(bool), method_correct[both].astype(bool)
    table = [[int((r & m).sum()), int((r & ~m).sum())], [int((~r & m).sum()), int((~r & ~m).sum())]]
    b, c = table[0][1], table[1][0]
    if b + c == 0:
        return 1.0, b, c
    return float(mcnemar(table, exact=True).pvalue), b, c


def bootstrap_p(difference: float, replicates: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the paired bootstrap's standard error (Wald:
    difference / sd of the resampled differences, normal tail).  Counting resamples beyond zero
    cannot go below 2 / (n_boot + 1), which no Holm correction over dozens of comparisons would
    let through; the standard error can."""
    from scipy.stats import norm
    d = replicates[np.isfinite(replicates)]
    if len(d) < 2 or not np.isfinite(difference):
        return float("nan")
    se = float(np.std(d, ddof=1))
    if se == 0:
        return 1.0 if difference == 0 else 0.0
    return float(2 * norm.sf(abs(difference) / se))


__all__ = ["shared_weights", "classification_scores", "regression_scores", "correctness", "mcnemar_p",
           "bootstrap_p", "OVERALL_METRICS", "GAP_METRICS", "MCNEMAR_METRICS", "Scored"]
