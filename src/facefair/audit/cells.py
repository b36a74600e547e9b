"""Every group metric from a table of counts, and the bootstrap as resampled counts.

Classification metrics depend on a row only through its cell: (true class, predicted class,
confidence bin).  Resampling the rows of a group with replacement is *the same distribution*
as drawing the group's cell counts from a multinomial with the observed cell shares, so a
replicate costs (occupied cells) instead of (rows): 1,000 replicates take about as long at 10^3
rows as at 10^7.  A group's size stays fixed, as in the row bootstrap it replaces.

What is exact and what is approximated:

- accuracy, macro-F1, FPR/FNR/selection rate (per class and averaged): exact, point and
  replicates (functions of the confusion counts).
- ECE: exact point estimate (the sum of confidences per bin is kept).  Its replicates are drawn
  from the group's (right/wrong, confidence bin) cells, separately from the confusion cells, and
  use each cell's mean confidence (the spread of confidences inside a bin is ignored).
- ROC-AUC: per class, scores go into ``AUC_BINS`` quantile bins of that class's score (bins
  never split tied scores); pairs in different bins are ordered exactly, pairs sharing a bin
  count one half.  With no more distinct scores than bins this is sklearn's AUC exactly;
  otherwise the largest possible difference is reported (``auc_error_bound``).  Its interval
  is DeLong's normal approximation (variance from the same bins), one independent normal draw
  per class and replicate, so a multi-class mean ignores the correlation between its classes.
- Exact age: errors (predicted - true) go into bins ``ERROR_BIN_YEARS`` wide that keep the
  exact sums of the errors and of their absolute values, so MAE and mean error are exact; a
  replicate uses each bin's mean (the spread inside a bin, at most its width, is ignored).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from facefair.audit import bootstrap as B

AUC_BINS = 1000
#: Score bins are cut at quantiles of at most this many rows (a seeded sample of larger tables).
EDGE_SAMPLE = 200_000
ERROR_BIN_YEARS = 0.25
MAX_ERROR_BINS = 400
#: Exact-age groups at least this large draw their error-bin counts from the multinomial's normal
#: approximation (same mean and covariance; MAE and mean error are sums over many bins, so the
#: central limit theorem has long taken over): 20x faster than exact multinomial draws.
GAUSSIAN_ROWS = 20_000


@dataclass
class ScoreBins:
    """One class's scores binned for ROC-AUC: ``bin`` per row, and whether each row is of the class."""
    cls: str
    bins: np.ndarray  # int32 per row, -1 where not scored
    n_bins: int


def score_bins(scores: np.ndarray, usable: np.ndarray, cls: str, n_bins: int = AUC_BINS, seed: int = 0
               ) -> ScoreBins:
    """Quantile bins of one class's scores over the usable rows; tied scores share a bin."""
    values = scores[usable]
    sample = values
    if len(values) > EDGE_SAMPLE:  # edges need not be exact quantiles, only sensible cuts
        sample = np.random.default_rng(seed).choice(values, EDGE_SAMPLE, replace=False)
    ordered = np.sort(sample)
    distinct = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered
    if len(distinct) <= n_bins and len(sample) == len(values):
        edges = distinct  # every distinct score its own bin: AUC exact
    else:
        cuts = ordered[np.linspace(0, len(ordered) - 1, n_bins + 1).astype(np.int64)[1:-1]]
        edges = np.concatenate([np.unique(cuts), [np.inf]])
    bins = np.full(len(scores), -1, dtype=np.int32)
    # side="left" on the sorted edges: a score equal to an edge goes to that edge's bin
    bins[usable] = np.searchsorted(edges, values, side="left").astype(np.int32)
    return ScoreBins(cls, bins, len(edges))


def auc_from_hist(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC from per-bin counts (..., bins) of positives and negatives (ties: one half)."""
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        total = pos.sum(axis=-1) * neg.sum(axis=-1)
        return np.where(total > 0, (pos * (below + 0.5 * neg)).sum(axis=-1) / total, np.nan)


def auc_error_bound(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Largest possible difference between the binned and the exact AUC: half the pairs sharing a bin."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (pos * neg).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


def delong_sd(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """DeLong's standard error of the AUC from per-bin counts (..., bins)."""
    P, N = pos.sum(axis=-1, keepdims=True), neg.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.cumsum(neg, axis=-1) - neg
        above = pos.sum(axis=-1, keepdims=True) - np.cumsum(pos, axis=-1)
        v10 = (below + 0.5 * neg) / N  # per positive in the bin: share of negatives it beats
        v01 = (above + 0.5 * pos) / P  # per negative: share of positives above it
        auc = (pos * v10).sum(axis=-1, keepdims=True) / P
        s10 = (pos * (v10 - auc) ** 2).sum(axis=-1) / np.maximum(P[..., 0] - 1, 1)
        s01 = (neg * (v01 - auc) ** 2).sum(axis=-1) / np.maximum(N[..., 0] - 1, 1)
        return np.sqrt(s10 / P[..., 0] + s01 / N[..., 0])


def multinomial(rng: np.random.Generator, counts: np.ndarray, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicate counts of the occupied cells: (n_boot, occupied) and the occupied cells' indices."""
    occupied = np.flatnonzero(counts)
    n = int(counts.sum())
    if n == 0:
        return np.zeros((n_boot, 0)), occupied
    draws = rng.multinomial(n, counts[occupied] / n, size=n_boot)
    return draws.astype(np.float64), occupied


@dataclass
class ClassificationCells:
    """Counts of one task over the groups of one attribute.

    ``confusion``: (groups, k, k) true x predicted.  ``calib`` and ``conf_sum``: (groups, 2, bins)
    rows and summed confidence by (wrong/right, confidence bin), None without probabilities.
    ``auc``: per class (groups, 2, score bins) counts of non-members and members.
    """
    classes: tuple[str, ...]
    confusion: np.ndarray
    calib: Optional[np.ndarray]
    conf_sum: Optional[np.ndarray]
    auc: dict[str, np.ndarray]
    positive: Optional[str]

    @property
    def sizes(self) -> np.ndarray:
        return self.confusion.sum(axis=(1, 2))


def classification_cells(codes: np.ndarray, n_groups: int, true_idx: np.ndarray, pred_idx: np.ndarray,
                         classes: tuple[str, ...], positive: Optional[str], conf_bin: Optional[np.ndarray],
                         confidence: Optional[np.ndarray], n_bins: int, scores: list[ScoreBins]
                         ) -> ClassificationCells:
    """Count the rows with ``codes >= 0`` (their group) into cells; O(rows), once per attribute."""
    k = len(classes)
    outside = codes < 0  # rows of no group (unlabelled, unknown attribute) go to a last, dropped slot

    def count(cell: np.ndarray, per_group: int, weights=None) -> np.ndarray:
        key = np.where(outside, n_groups * per_group, codes * per_group + cell)
        return np.bincount(key, weights=weights, minlength=n_groups * per_group + 1)[:-1].reshape(n_groups, -1)

    confusion = count(true_idx * k + pred_idx, k * k).reshape(n_groups, k, k).astype(np.float64)
    calib = conf_sum = None
    if conf_bin is not None:
        cell = (true_idx == pred_idx) * n_bins + conf_bin
        calib = count(cell, 2 * n_bins).reshape(n_groups, 2, n_bins).astype(np.float64)
        conf_sum = count(cell, 2 * n_bins, confidence).reshape(n_groups, 2, n_bins)
    auc = {}
    for sb in scores:
        cell = (true_idx == classes.index(sb.cls)) * sb.n_bins + sb.bins
        auc[sb.cls] = count(cell, 2 * sb.n_bins).reshape(n_groups, 2, sb.n_bins).astype(np.float64)
    return ClassificationCells(classes, confusion, calib, conf_sum, auc, positive)


def _auc_classes(cells: ClassificationCells) -> list[str]:
    if cells.positive is not None:
        return [cells.positive] if cells.positive in cells.auc else []
    return [c for c in cells.classes if c in cells.auc]


def _mean_auc(per_class: list[np.ndarray], shape) -> np.ndarray:
    if not per_class:
        return np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(per_class), axis=0)


def classification_point(cells: ClassificationCells) -> dict[str, np.ndarray]:
    """Every metric key per group, as (1, groups) arrays (the MetricFrame path's definitions)."""
    out = B.confusion_metrics(cells.confusion[None], cells.classes)
    if cells.conf_sum is not None:
        signed = cells.conf_sum.sum(axis=1) - cells.calib[:, 1]  # (groups, bins): confidence - right
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ece"] = (np.abs(signed).sum(axis=1) / cells.sizes)[None]
        per_class = []
        for cls in _auc_classes(cells):
            hist = cells.auc[cls]
            per_class.append(auc_from_hist(hist[:, 1], hist[:, 0]))
        out["roc_auc"] = _mean_auc(per_class, (len(cells.sizes),))[None]
    return out


def auc_bound(cells: ClassificationCells) -> float:
    """Largest difference between a reported group AUC (one class) and the exact one."""
    bounds = [auc_error_bound(h[:, 1], h[:, 0]) for h in cells.auc.values()]
    finite = [b[np.isfinite(b)] for b in bounds]
    return float(max((b.max() for b in finite if len(b)), default=0.0))


def classification_group_replicates(cells: ClassificationCells, g: int, rng: np.random.Generator, n_boot: int
                                    ) -> dict[str, np.ndarray]:
    """``n_boot`` replicates of every metric of group ``g``: multinomial draws of its confusion
    cells (exactly a row resample), of its calibration cells, and DeLong draws of its AUC."""
    k = len(cells.classes)
    counts = cells.confusion[g].reshape(-1)
    draws, occupied = multinomial(rng, counts, n_boot)
    confusion = np.zeros((n_boot, k * k))
    confusion[:, occupied] = draws
    out = B.confusion_metrics(confusion.reshape(n_boot, k, k), cells.classes)
    if cells.conf_sum is not None:
        calib = cells.calib[g].reshape(-1)
        d, occ = multinomial(rng, calib, n_boot)
        n_bins = cells.calib.shape[-1]
        right = (occ // n_bins).astype(float)
        mean_conf = cells.conf_sum[g].reshape(-1)[occ] / calib[occ]
        to_bin = np.zeros((len(occ), n_bins))
        to_bin[np.arange(len(occ)), occ % n_bins] = mean_conf - right
        with np.errstate(invalid="ignore", divide="ignore"):
            out["ece"] = np.abs(d @ to_bin).sum(axis=1) / calib.sum()
        per_class = []
        for cls in _auc_classes(cells):
            hist = cells.auc[cls][g]
            centre = auc_from_hist(hist[1], hist[0])
            if np.isfinite(centre):
                sd = float(delong_sd(hist[1], hist[0]))
                per_class.append(np.clip(centre + sd * rng.standard_normal(n_boot), 0.0, 1.0))
        out["roc_auc"] = _mean_auc(per_class, (n_boot,))
    return out


@dataclass
class RegressionCells:
    """Per group and error bin: rows, sum of errors, sum of absolute errors; exact sums of squares."""
    counts: np.ndarray  # (groups, bins)
    err_sum: np.ndarray
    abs_sum: np.ndarray
    sq_sum: np.ndarray  # (groups,) sum of squared errors (for the variance of |error|)


def error_bins(errors: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, int]:
    """Bin per row (-1 where unusable) of the signed error, ``ERROR_BIN_YEARS`` wide (wider if the
    errors spread over more than ``MAX_ERROR_BINS`` bins)."""
    width = ERROR_BIN_YEARS
    values = errors[usable]
    if len(values) == 0:
        return np.full(len(errors), -1), 0
    span = float(values.max() - values.min())
    while span / width > MAX_ERROR_BINS:
        width *= 2
    ids = np.floor((values - values.min()) / width).astype(np.int64)
    bins = np.full(len(errors), -1, dtype=np.int64)
    bins[usable] = ids
    return bins, int(ids.max()) + 1


def regression_cells(codes: np.ndarray, n_groups: int, errors: np.ndarray, bins: np.ndarray, n_bins: int
                     ) -> RegressionCells:
    rows = np.flatnonzero(codes >= 0)
    flat = codes[rows].astype(np.int64) * n_bins + bins[rows]
    size = n_groups * n_bins
    e = errors[rows]
    shape = (n_groups, n_bins)
    return RegressionCells(np.bincount(flat, minlength=size).reshape(shape).astype(float),
                           np.bincount(flat, weights=e, minlength=size).reshape(shape),
                           np.bincount(flat, weights=np.abs(e), minlength=size).reshape(shape),
                           np.bincount(codes[rows], weights=e * e, minlength=n_groups))


def regression_point(cells: RegressionCells) -> dict[str, np.ndarray]:
    n = cells.counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"mae": (cells.abs_sum.sum(axis=1) / n)[None], "mean_error": (cells.err_sum.sum(axis=1) / n)[None]}


def regression_group_replicates(cells: RegressionCells, g: int, rng: np.random.Generator, n_boot: int
                                ) -> dict[str, np.ndarray]:
    counts = cells.counts[g]
    n = counts.sum()
    if n >= GAUSSIAN_ROWS:
        occupied = np.flatnonzero(counts)
        share = counts[occupied] / n
        z = rng.standard_normal((n_boot, len(occupied))) * np.sqrt(n * share)
        draws = n * share + z - share * z.sum(axis=1, keepdims=True)  # multinomial covariance, total n
    else:
        draws, occupied = multinomial(rng, counts, n_boot)
    mean_abs = cells.abs_sum[g, occupied] / counts[occupied]
    mean_err = cells.err_sum[g, occupied] / counts[occupied]
    return {"mae": draws @ mean_abs / n, "mean_error": draws @ mean_err / n}


def abs_error_variance(cells: RegressionCells) -> np.ndarray:
    """Sample variance (ddof 1) of |error| per group, from the exact sums."""
    n = cells.counts.sum(axis=1)
    mean_abs = cells.abs_sum.sum(axis=1) / np.maximum(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, (cells.sq_sum - n * mean_abs ** 2) / (n - 1), np.nan)
