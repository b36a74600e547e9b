"""Row-weight bootstrap (the paired comparisons) and the helpers every bootstrap shares.

``facefair audit`` resamples cell counts instead (``audit.cells``: the same distribution, at a
cost independent of the rows); ``audit.paired`` and tests use the row weights here.  A
replicate is a table of draw counts (how often each row was drawn); every metric is then a
weighted sum, so 1,000 replicates cost a few matrix products instead of 1,000 MetricFrames.
Rows are resampled within each group (stratified), which keeps each group's size fixed, so a
group's interval reflects the uncertainty of its own estimate, and gaps are recomputed from the
same replicates.  Each (task, attribute, group) gets its own seeded stream, derived from the
seed and the names, so adding an attribute or a task never changes another group's interval.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Iterator, Optional

import numpy as np

from facefair.audit.calibration import ece_from_weights
from facefair.audit.metrics import KEY_SEP

#: Upper bound on replicate-by-row cells held at once (float32: 4 bytes each).
MAX_CELLS = 8_000_000


def stream(seed: int, *names: str) -> np.random.Generator:
    key = zlib.crc32("\x1f".join(names).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def weight_chunks(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[np.ndarray]:
    """Draw counts, (replicates, n) float32 (exact below 2**24), in chunks that keep memory bounded."""
    per_chunk = max(1, MAX_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        drawn = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        done += b


def confusion_metrics(confusion: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and one-vs-rest rates from confusion counts (..., true, pred).

    The same definitions as the MetricFrame path: macro-F1 over the classes in the true labels
    (NaN with fewer than two), a rate is NaN where its denominator is empty.
    """
    confusion = np.asarray(confusion, dtype=float)
    n = confusion.sum(axis=(-1, -2))
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    actual = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    fn, fp = actual - tp, predicted - tp
    negatives = n[..., None] - actual
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {"accuracy": tp.sum(axis=-1) / n}
        f1 = np.where(actual > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        # One true class: not applicable (as ``metrics.macro_f1``), not that class's F1.
        out["macro_f1"] = np.where((actual > 0).sum(axis=-1) >= 2, np.nanmean(f1, axis=-1), np.nan)
        fpr = np.where(negatives > 0, fp / negatives, np.nan)
        fnr = np.where(actual > 0, fn / actual, np.nan)
        selection = predicted / n[..., None]
    for i, cls in enumerate(classes):
        out[f"fpr_ovr{KEY_SEP}{cls}"] = fpr[..., i]
        out[f"fnr_ovr{KEY_SEP}{cls}"] = fnr[..., i]
        out[f"selection_rate_ovr{KEY_SEP}{cls}"] = selection[..., i]
    return out


def weighted_auc(weights: np.ndarray, truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC (Mann-Whitney, ties count one half) of each replicate of weighted rows."""
    order = np.argsort(score, kind="mergesort")
    score, truth = score[order], truth[order].astype(bool)
    pos_w, neg_w = weights[:, order[truth]], weights[:, order[~truth]]
    denominator = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    # For each positive, the negatives scored strictly below it, plus half of those tied with it.
    neg_scores = score[~truth]
    below = np.searchsorted(neg_scores, score[truth], side="left")
    upto = np.searchsorted(neg_scores, score[truth], side="right")
    cum = np.concatenate([np.zeros((len(weights), 1), dtype=weights.dtype), np.cumsum(neg_w, axis=1)], axis=1)
    beaten = cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (pos_w * beaten).sum(axis=1) / denominator, np.nan)


def classification_replicates(weights: np.ndarray, true_idx: np.ndarray, pred_idx: np.ndarray,
                              classes: tuple[str, ...], *, proba: Optional[np.ndarray] = None,
                              prob_classes: tuple[str, ...] = (), positive: Optional[str] = None,
                              confidence: Optional[np.ndarray] = None, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Every MetricFrame key for each replicate; ``weights`` (replicates, rows) covers the group's rows."""
    k = len(classes)
    cells = np.zeros((len(true_idx), k * k), dtype=weights.dtype)
    cells[np.arange(len(true_idx)), true_idx * k + pred_idx] = 1.0
    out = confusion_metrics((weights @ cells).reshape(-1, k, k), classes)
    if proba is not None:
        column_of = {c: i for i, c in enumerate(prob_classes)}
        scored = [positive] if positive is not None else [c for c in classes if c in column_of]
        aucs = []
        for cls in scored:
            truth = true_idx == classes.index(cls)
            # Classes with no members or only members in the group are not scored, as in the point path.
            if 0 < truth.sum() < len(truth):
                aucs.append(weighted_auc(weights, truth, proba[:, column_of[cls]]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["roc_auc"] = np.nanmean(np.stack(aucs), axis=0) if aucs else np.full(len(weights), np.nan)
        out["ece"] = ece_from_weights(weights, confidence, true_idx == pred_idx, n_bins)
    return out


def regression_replicates(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    total = weights.sum(axis=1)
    return {"mae": weights @ np.abs(y_pred - y_true) / total, "mean_error": weights @ (y_pred - y_true) / total}


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI along axis 0, ignoring replicates where the metric was undefined.

    Infinite replicates (a skewed error ratio over a group with no errors) are kept: where
    interpolation would meet inf - inf the bound is inf.
    """
    replicates = np.asarray(replicates, dtype=float)
    if replicates.shape[0] == 0:
        nan = np.full(replicates.shape[1:], np.nan)
        return nan, nan.copy()
    alpha = (1 - level) / 2
    # np.quantile where nothing is undefined: nanquantile goes column by column in Python
    quantile = np.nanquantile if np.isnan(replicates).any() else np.quantile
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = quantile(replicates, [alpha, 1 - alpha], axis=0)
    has_inf = np.isinf(replicates).any(axis=0)
    low = np.where(np.isnan(low) & has_inf, np.inf, low)
    high = np.where(np.isnan(high) & has_inf, np.inf, high)
    return low, high
