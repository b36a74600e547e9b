"""Is a gap real?  One test per gap the audit judges, Holm over all of them, and the power to see one.

A gap is the largest minus the smallest of several group values; picking the extreme pair out of
many and checking whether their two intervals overlap claims gaps that are not there (on a
table where every group has the same error process, the old rule called some gap "real" in most
large audits).  Here each judged gap answers one question -- "do these groups differ at all in
this rate?" -- with a test of equal rates across the k groups that were judged:

- a rate that is one proportion per group (accuracy; a binary task's FPR, FNR, selection rate;
  one class's one-vs-rest rate): Pearson's chi-square test of homogeneity of the k x 2 table
  (scipy); where an expected count is below 5 the p-value is Monte-Carlo (``MC_DRAWS`` tables
  drawn with the pooled rate, same group sizes), as the chi-square approximation is too liberal;
- demographic parity of a multi-class task: the same test on the k x classes table of predictions;
- a multi-class FNR: the rows behind each class's FNR are disjoint, so the per-class statistics
  (each as its chi-square quantile) add up to one chi-square test of "every class's FNR is the
  same in every group"; a multi-class FPR (rows overlap between classes): Bonferroni over classes;
- equalized odds: FNR and FPR together (binary: the two independent statistics summed;
  multi-class: Bonferroni over the two);
- exact-age MAE: Welch's one-way ANOVA of the absolute errors (statsmodels ``anova_generic``,
  unequal variances).

The gaps built on the same rate (degree of bias, max/min ratio, worst group, skewed error ratio
on accuracy; ratio and worst group on MAE) share that rate's test and are not counted twice.
Holm's step-down correction (statsmodels ``multipletests``) then runs over every test in the
audit -- all tasks, attributes and intersections -- and a gap is *significant* when its adjusted
p-value is below ``alpha``; otherwise it is *consistent with no difference*.

Power: for a group of ``n`` (of ``N`` judged rows, pooled rate ``p``), shifting its rate by
``delta`` while the others stay put gives the chi-square test a noncentrality of
``delta^2 n (N - n) / (N p (1 - p))``; the minimum detectable difference (``mdd``) is the
``delta`` whose noncentral chi-square power reaches ``POWER`` at level ``alpha / m`` (``m`` tests:
the level of Holm's first step, so it holds after the correction).  MAE uses the pooled variance
of the absolute error in place of ``p (1 - p)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np

MC_DRAWS = 20_000
POWER = 0.8
MIN_EXPECTED = 5.0

SIGNIFICANT = "significant"
NO_DIFFERENCE = "consistent with no difference"
NOT_JUDGED = "not judged"
NOT_TESTED = "not tested"


@dataclass
class Test:
    """The outcome of one test, before the correction."""
    p: float
    method: str
    df: int = 0
    stat: float = float("nan")  # chi-square-equivalent statistic (for summing independent tests)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # rows per judged group
    unit_var: float = float("nan")  # p(1-p) or var(|error|): what the power calculation needs
    groups: list = field(default_factory=list)  # names of the groups in ``sizes``
    compared: int = 0  # one-vs-rest comparisons behind the p-value (0: an omnibus test)


def homogeneity(table: np.ndarray, rng: np.random.Generator, label: str = "chi-square") -> Optional[Test]:
    """Test of equal row distributions of a (groups, outcomes) count table; None with < 2 rows of data."""
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0]
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[0] < 2:
        return None
    sizes = table.sum(axis=1)
    share = table.sum(axis=0) / table.sum()
    unit_var = float(share[0] * (1 - share[0])) if table.shape[1] <= 2 else float("nan")
    df = (table.shape[0] - 1) * max(table.shape[1] - 1, 0)
    if table.shape[1] < 2:  # every group in one outcome: identical rates
        return Test(1.0, label, df=table.shape[0] - 1, stat=0.0, sizes=sizes, unit_var=0.0)
    from scipy.stats import chi2
    expected = sizes[:, None] * share[None, :]
    stat = float(((table - expected) ** 2 / expected).sum())
    if expected.min() >= MIN_EXPECTED:
        return Test(float(chi2.sf(stat, df)), label, df=df, stat=stat, sizes=sizes, unit_var=unit_var)
    draws = rng.multinomial(sizes.astype(np.int64), share, size=(MC_DRAWS, len(sizes)))
    simulated = ((draws - expected) ** 2 / expected).sum(axis=(1, 2))
    p = (1 + int((simulated >= stat - 1e-9).sum())) / (MC_DRAWS + 1)
    return Test(p, f"{label} (Monte-Carlo, sparse cells)", df=df, stat=float(chi2.isf(p, df)), sizes=sizes,
                unit_var=unit_var)


def one_vs_rest(table: np.ndarray) -> Optional[Test]:
    """Each group's rate against the pooled rest of the judged groups (a (groups, 2) count table):
    the 1-df chi-square test (Fisher's exact test where an expected count is below 5), Bonferroni
    over the groups (one test for two groups).  A gap is usually one group apart from the rest;
    this finds it with far fewer rows than the omnibus test of all k groups, which spreads its
    power over k - 1 directions."""
    from scipy.stats import chi2, fisher_exact
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0]
    if table.shape[0] < 2:
        return None
    sizes = table.sum(axis=1)
    total = table.sum(axis=0)
    rate = total[0] / total.sum()
    unit_var = float(rate * (1 - rate))
    compared = table if len(table) > 2 else table[:1]
    p_values = []
    for row in compared:
        two = np.array([row, total - row])
        expected = two.sum(axis=1, keepdims=True) * two.sum(axis=0, keepdims=True) / two.sum()
        if (two.sum(axis=0) == 0).any():
            p_values.append(1.0)  # every row in one outcome: no difference to test
        elif expected.min() < MIN_EXPECTED:
            p_values.append(float(fisher_exact(two.astype(np.int64)).pvalue))
        else:
            stat = float(((two - expected) ** 2 / expected).sum())
            p_values.append(float(chi2.sf(stat, 1)))
    p = min(1.0, len(compared) * min(p_values))
    method = "each group vs the rest, chi-square (Fisher where sparse)" + \
        (f", Bonferroni over {len(compared)} groups" if len(compared) > 1 else "")
    return Test(p, method, df=1, stat=float(chi2.isf(p, 1)) if p > 0 else float("inf"), sizes=sizes,
                unit_var=unit_var, compared=len(compared))


def summed(tests: list[Optional[Test]], label: str) -> Optional[Test]:
    """Independent tests (disjoint rows) as one chi-square: statistics and degrees of freedom add."""
    tests = [t for t in tests if t is not None]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    from scipy.stats import chi2
    stat, df = sum(t.stat for t in tests), sum(t.df for t in tests)
    return Test(float(chi2.sf(stat, df)), label, df=df, stat=stat)


def bonferroni(tests: list[Optional[Test]], label: str) -> Optional[Test]:
    """Dependent tests: the smallest p-value times their number (valid under any dependence)."""
    tests = [t for t in tests if t is not None]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return Test(min(1.0, len(tests) * min(t.p for t in tests)), label)


def welch(means: np.ndarray, variances: np.ndarray, sizes: np.ndarray) -> Optional[Test]:
    """Each group's mean (here: of the absolute errors) against the pooled rest: Welch's t-test
    (scipy, from the summary statistics), Bonferroni over the groups (one test for two)."""
    from scipy.stats import chi2, ttest_ind_from_stats
    keep = sizes > 1
    means, variances, sizes = means[keep], variances[keep], sizes[keep]
    if len(means) < 2:
        return None
    pooled = float(((sizes - 1) * variances).sum() / (sizes - 1).sum())
    if pooled <= 0:
        same = bool(np.all(means == means[0]))
        return Test(1.0 if same else 0.0, "Welch t-test", df=1, sizes=sizes, unit_var=0.0)
    total_n = sizes.sum()
    total_sum = (means * sizes).sum()
    total_sq = ((sizes - 1) * variances + sizes * means ** 2).sum()  # sum of squares of every row
    compared = range(len(means)) if len(means) > 2 else range(1)
    p_values = []
    for g in compared:
        n_rest = total_n - sizes[g]
        mean_rest = (total_sum - means[g] * sizes[g]) / n_rest
        sq_rest = total_sq - ((sizes[g] - 1) * variances[g] + sizes[g] * means[g] ** 2)
        var_rest = max((sq_rest - n_rest * mean_rest ** 2) / (n_rest - 1), 0.0)
        # A group without spread would make the test degenerate; a tiny floor keeps it defined.
        floor = pooled * 1e-6
        p_values.append(float(ttest_ind_from_stats(means[g], np.sqrt(max(variances[g], floor)), sizes[g],
                                                   mean_rest, np.sqrt(max(var_rest, floor)), n_rest,
                                                   equal_var=False).pvalue))
    p = min(1.0, len(p_values) * min(p_values))
    method = "each group vs the rest, Welch t-test" + \
        (f", Bonferroni over {len(p_values)} groups" if len(p_values) > 1 else "")
    return Test(p, method, df=1, stat=float(chi2.isf(p, 1)) if p > 0 else float("inf"), sizes=sizes,
                unit_var=pooled, compared=len(p_values))


def holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); NaN stays NaN."""
    p_values = np.asarray(p_values, dtype=float)
    out = np.full(len(p_values), np.nan)
    known = ~np.isnan(p_values)
    if known.any():
        from statsmodels.stats.multitest import multipletests
        out[known] = multipletests(p_values[known], alpha=alpha, method="holm")[1]
    return out


@lru_cache(maxsize=256)
def _noncentrality(df: int, level: float) -> float:
    """The noncentrality at which a chi-square(df) test at ``level`` has power ``POWER``."""
    from scipy.optimize import brentq
    from scipy.stats import chi2, ncx2
    critical = chi2.isf(level, df)
    return float(brentq(lambda lam: ncx2.sf(critical, df, lam) - POWER, 1e-9, 1e5))


def detectable(sizes: np.ndarray, unit_var: float, df: int, level: float, compared: int = 0) -> np.ndarray:
    """Per group: the smallest shift of its rate (the others unchanged) found with ``POWER`` at
    ``level``: by its one-vs-rest test at ``level / compared`` (``compared`` > 0), else by the
    omnibus chi-square test with ``df`` degrees of freedom."""
    sizes = np.asarray(sizes, dtype=float)
    total = sizes.sum()
    if not np.isfinite(unit_var) or unit_var <= 0 or len(sizes) < 2 or (df < 1 and compared < 1):
        return np.full(len(sizes), np.nan)
    if compared:
        from scipy.stats import norm
        lam = float(norm.isf(level / compared / 2) + norm.isf(1 - POWER)) ** 2
    else:
        lam = _noncentrality(df, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(lam * unit_var * total / (sizes * (total - sizes)))


__all__ = ["Test", "homogeneity", "summed", "bonferroni", "welch", "holm", "detectable", "SIGNIFICANT",
           "NO_DIFFERENCE", "NOT_JUDGED", "NOT_TESTED", "POWER"]
