"""Which test judges which gap (``verdicts`` has the tests), and the audit-wide Holm and power pass."""

from __future__ import annotations

from typing import Optional

import numpy as np

from facefair.audit import verdicts as V
from facefair.audit.cells import ClassificationCells, RegressionCells, abs_error_variance
from facefair.audit.metrics import KEY_SEP

#: Gaps with a test of their own.  The rest of a rate's gaps share its test (same hypothesis).
TESTED = ("accuracy_difference", "fpr_difference", "fnr_difference", "equalized_odds_difference",
          "demographic_parity_difference", "mae_difference")
SHARED = {"degree_of_bias": "accuracy_difference", "accuracy_max_min_ratio": "accuracy_difference",
          "worst_group_accuracy": "accuracy_difference", "skewed_error_ratio": "accuracy_difference",
          "mae_max_min_ratio": "mae_difference", "worst_group_mae": "mae_difference"}
REGRESSION_SHARED = {"degree_of_bias": "mae_difference"}
#: The group metric whose per-group detectable difference a test gives (binary tasks for rates).
MDD_METRIC = {"accuracy_difference": "accuracy", "fpr_difference": "fpr", "fnr_difference": "fnr",
              "demographic_parity_difference": "selection_rate", "mae_difference": "mae"}


def _named(test: Optional[V.Test], groups: list[str]) -> Optional[V.Test]:
    if test is not None and len(test.sizes) == len(groups):
        test.groups = groups
    return test


def _rate_table(cells: ClassificationCells, eligible: np.ndarray, thin: dict[str, np.ndarray], rate: str,
                c: int, groups: list[str], rng) -> Optional[V.Test]:
    """k x 2 table behind one class's one-vs-rest FNR or FPR, judged groups and cells only."""
    conf = cells.confusion
    tp = conf[:, c, c]
    actual = conf[:, c, :].sum(axis=1)
    predicted = conf[:, :, c].sum(axis=1)
    n = conf.sum(axis=(1, 2))
    if rate == "fnr":
        table = np.stack([actual - tp, tp], axis=1)  # errors first: the first column is the rate
    else:
        fp = predicted - tp
        table = np.stack([fp, n - actual - fp], axis=1)
    keep = eligible & ~thin.get(f"{rate}_ovr{KEY_SEP}{cells.classes[c]}", np.zeros(len(n), bool))
    keep &= table.sum(axis=1) > 0
    names = [g for g, k in zip(groups, keep) if k]
    return _named(V.one_vs_rest(table[keep]), names)


def classification_tests(cells: ClassificationCells, eligible: np.ndarray, thin: dict[str, np.ndarray],
                         parity: bool, groups: list[str], rng) -> dict[str, V.Test]:
    """One test per tested gap of a classification task across the groups of one attribute."""
    conf = cells.confusion
    k = len(cells.classes)
    n = conf.sum(axis=(1, 2))
    correct = conf[:, np.arange(k), np.arange(k)].sum(axis=1)
    judged = [g for g, e in zip(groups, eligible) if e]
    out: dict[str, Optional[V.Test]] = {
        "accuracy_difference": _named(V.one_vs_rest(np.stack([n - correct, correct], 1)[eligible]), judged)}
    if cells.positive is not None:
        c = cells.classes.index(cells.positive)
        fnr = _rate_table(cells, eligible, thin, "fnr", c, groups, rng)
        fpr = _rate_table(cells, eligible, thin, "fpr", c, groups, rng)
        out["fnr_difference"], out["fpr_difference"] = fnr, fpr
        if parity:
            out["equalized_odds_difference"] = V.summed([fnr, fpr], "FNR and FPR tests combined (chi-square sum)")
            selected = conf[:, :, c].sum(axis=1)
            out["demographic_parity_difference"] = _named(
                V.one_vs_rest(np.stack([selected, n - selected], 1)[eligible]), judged)
    else:
        fnr = V.summed([_rate_table(cells, eligible, thin, "fnr", c, groups, rng) for c in range(k)],
                       "per class as for a binary FNR, combined over classes (chi-square sum)")
        fpr = V.bonferroni([_rate_table(cells, eligible, thin, "fpr", c, groups, rng) for c in range(k)],
                           "per class as for a binary FPR, Bonferroni over classes")
        out["fnr_difference"], out["fpr_difference"] = fnr, fpr
        if parity:
            out["equalized_odds_difference"] = V.bonferroni([fnr, fpr], "FNR and FPR tests, Bonferroni")
            out["demographic_parity_difference"] = V.homogeneity(conf.sum(axis=1)[eligible], rng,
                                                                 "chi-square of the predicted classes")
    return {k_: v for k_, v in out.items() if v is not None}


def regression_tests(cells: RegressionCells, eligible: np.ndarray, groups: list[str]) -> dict[str, V.Test]:
    n = cells.counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = cells.abs_sum.sum(axis=1) / n
    test = V.welch(means[eligible], abs_error_variance(cells)[eligible], n[eligible])
    judged = [g for g, e, size in zip(groups, eligible, n) if e and size > 1]
    return {"mae_difference": _named(test, judged)} if test is not None else {}


def test_for(metric: str, kind: str, tests: dict[str, V.Test]) -> tuple[Optional[V.Test], bool]:
    """The test that judges ``metric`` and whether it is that test's own row (counted in the family)."""
    if metric in TESTED:
        return tests.get(metric), True
    shared = (REGRESSION_SHARED if kind == "regression" else {}).get(metric) or SHARED.get(metric)
    return (tests.get(shared), False) if shared else (None, False)


def finish(gaps: list[dict], tests: list[tuple[Optional[V.Test], bool]], groups: list[dict], alpha: float
           ) -> int:
    """Holm over every gap's own test; fills p_holm, verdict and mdd in place; returns the family size."""
    own = [i for i, (t, primary) in enumerate(tests) if t is not None and primary]
    adjusted = V.holm(np.array([tests[i][0].p for i in own]), alpha)
    by_test = {id(tests[i][0]): a for i, a in zip(own, adjusted)}
    m = len(own)
    level = alpha / max(m, 1)
    group_mdd: dict[tuple, float] = {}
    for row, (test, primary) in zip(gaps, tests):
        if test is None:
            judged = row["metric"] in TESTED or row["metric"] in SHARED
            row.update(p_value=np.nan, p_holm=np.nan, mdd=np.nan, test="",
                       verdict=V.NOT_JUDGED if judged else V.NOT_TESTED)
            continue
        p_holm = by_test.get(id(test), np.nan)
        per_group = V.detectable(test.sizes, test.unit_var, test.df, level, test.compared)
        row.update(p_value=test.p, p_holm=p_holm, test=test.method,
                   verdict=V.SIGNIFICANT if p_holm < alpha else V.NO_DIFFERENCE,
                   mdd=float(np.nanmax(per_group)) if np.isfinite(per_group).any() else np.nan)
        names = test.groups
        basis = MDD_METRIC.get(row["metric"])
        if primary and basis and names:
            for name, value in zip(names, per_group):
                group_mdd[(row["task"], row["attribute"], name, basis)] = float(value)
    for row in groups:
        row["mdd"] = group_mdd.get((row["task"], row["attribute"], row["group"], row["metric"]), np.nan) \
            if row["class"] is None else np.nan
    return m
