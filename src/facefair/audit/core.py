"""``audit_predictions``: group metrics, gaps, calibration and confusion matrices with bootstrap CIs."""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from facefair.audit import bootstrap as B
from facefair.audit import cells as C
from facefair.audit import judge
from facefair.audit.calibration import bin_edges, bin_index
from facefair.audit.definitions import definitions
from facefair.audit.config import (ALL, CALIBRATION_COLUMNS, CONFUSION_COLUMNS, GAP_COLUMNS, GROUP_COLUMNS,
                                   OVERALL, AuditConfig, AuditResult, TaskInfo)
from facefair.audit.gaps import GAP_BASIS as _GAP_BASIS
from facefair.audit.gaps import gap_inputs, gap_values, worst_and_best
from facefair import table as T
from facefair.audit.groups import SEPARATOR, TaskData, attribute_values, detect_tasks, group_order
from facefair.audit.metrics import (KEY_SEP, derive_aggregates, mask_single_class_f1, mask_thin_rates, rate_support,
                                    reported_keys, split_key, thin_cells)

GAP_BASIS_NAMES = set(_GAP_BASIS)
#: Tables with at least this many rows show progress bars (on a terminal).
PROGRESS_ROWS = 200_000


class _Collector:
    def __init__(self, replicates: Optional[dict] = None) -> None:
        self.replicates = replicates
        self.groups: list[dict] = []
        self.gaps: list[dict] = []
        self.tests: list[tuple] = []  # per gap row: (verdicts.Test or None, whether it is the test's own row)
        self.calibration: list[dict] = []
        self.confusion: list[dict] = []
        self.auc_bound = 0.0


@dataclass
class _Prepared:
    """Per task, once: class indices, confidence bins and score bins (classification) or error bins."""
    valid: np.ndarray
    true_idx: Optional[np.ndarray] = None
    pred_idx: Optional[np.ndarray] = None
    scored: Optional[np.ndarray] = None
    confidence: Optional[np.ndarray] = None
    conf_bin: Optional[np.ndarray] = None
    scores: list = field(default_factory=list)
    errors: Optional[np.ndarray] = None
    error_bin: Optional[np.ndarray] = None
    n_error_bins: int = 0


def _prepare(task: TaskData, config: AuditConfig, notes: list[str]) -> _Prepared:
    if task.kind != "classification":
        errors = task.y_pred - task.y_true
        bins, n_bins = C.error_bins(errors, task.valid)
        return _Prepared(task.valid, errors=errors, error_bin=bins, n_error_bins=n_bins)
    prep = _Prepared(task.valid, task.indices(task.y_true), task.indices(task.y_pred))
    if task.proba is not None:
        confidence = task.confidence()
        scored = np.isfinite(task.proba).all(axis=1) & np.isfinite(confidence)
        missing = int((task.valid & ~scored).sum())
        if missing:
            notes.append(f"Task {task.name!r}: {missing} rows lack a probability for their predicted label, "
                         "so ROC-AUC and ECE are skipped for groups that contain them.")
        usable = task.valid & scored
        prep.scored, prep.confidence = scored, np.where(scored, confidence, 0.0)
        prep.conf_bin = bin_index(np.clip(prep.confidence, 0.0, 1.0), config.n_bins)
        column_of = {c: i for i, c in enumerate(task.prob_classes)}
        wanted = [task.positive_class] if task.positive_class is not None else \
            [c for c in task.classes if c in column_of]
        prep.scores = [C.score_bins(task.proba[:, column_of[c]], usable, c, seed=config.seed)
                       for c in wanted if c in column_of]
    return prep


def _coded(values: np.ndarray) -> tuple[np.ndarray, list]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), list(uniques)


def audit_predictions(df: pd.DataFrame, config: Optional[AuditConfig] = None, source: str = "<DataFrame>",
                      replicates: Optional[dict] = None, progress: Optional[bool] = None) -> AuditResult:
    """Audit a predictions table (see ``docs/audit.md`` for the columns it reads).

    ``replicates``, when given, is filled with every group metric's bootstrap replicates, keyed
    ``(task, attribute, group, metric key)``, for comparisons that need more than the interval
    (the transfer audit's difference between two datasets).  ``progress``: show progress bars on
    stderr (default: for tables of ``PROGRESS_ROWS`` rows or more, when stderr is a terminal).
    """
    from tqdm.auto import tqdm

    config = config or AuditConfig()
    # Notes about the table itself come first: what the reader changed, repeated rows, then what each
    # task and attribute lacks; the summary points to them.
    notes: list[str] = list(df.attrs.get("notes", []))
    df = _count_duplicates_once(df, config, notes)
    tasks = detect_tasks(df, config.tasks, config.positive_classes, notes)
    if not tasks:
        raise ValueError("the table has no task to audit: it needs T_true and T_pred columns "
                         "(gender, race, age_group or age) with at least one labelled, predicted row")
    attributes = attribute_values(df, config.attributes, config.intersections, notes)
    input_notes = list(notes)
    if not attributes:
        notes.append("No sensitive attribute column (race, gender, age_group) was found: only overall "
                     "figures are reported.")
    coded = {OVERALL: (np.zeros(len(df), dtype=np.int64), [ALL])}
    coded.update({name: _coded(values) for name, values in attributes.items()})
    out = _Collector(replicates)
    disable = (len(df) < PROGRESS_ROWS) if progress is None else not progress
    bar = tqdm(total=len(tasks) * len(coded), desc="audit", unit="table", disable=disable or None, leave=False)
    for task in tasks:
        prep = _prepare(task, config, notes)
        for attribute, (codes, uniques) in coded.items():
            bar.set_postfix_str(f"{task.name} by {attribute}")
            _audit_attribute(task, prep, attribute, codes, uniques, config, out, notes)
            bar.update()
    bar.close()
    family = judge.finish(out.gaps, out.tests, out.groups, config.alpha)
    if out.auc_bound > 1e-4:
        notes.append(f"ROC-AUC is computed from {C.AUC_BINS} score bins per class (pairs sharing a bin count one "
                     f"half): each group's value is within {out.auc_bound:.4f} of the exact one.")
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
        notes=notes, definitions=definitions(config), family_size=family)
    from facefair.audit.summary import plain_summary
    result.summary = plain_summary(result) + _input_clause(input_notes)
    return result


def _count_duplicates_once(df: pd.DataFrame, config: AuditConfig, notes: list[str]) -> pd.DataFrame:
    """Rows repeating an earlier row's image would count one face several times and narrow every
    interval: kept once (the first), or all with ``keep_duplicates``; either way in the notes."""
    repeated = T.duplicate_rows(df)
    if not repeated.any():
        return df
    images = int(df.loc[repeated, "path"].nunique())
    what = f"{int(repeated.sum())} rows repeat an earlier row's path ({images} images appear more than once)"
    if config.keep_duplicates:
        notes.append(f"{what}; all are counted (keep_duplicates), so intervals are narrower than the faces justify.")
        return df
    notes.append(f"{what}; each image is counted once (its first row). Pass --keep-duplicates to count every row.")
    kept = df.loc[~repeated].reset_index(drop=True)
    kept.attrs = dict(df.attrs)
    return kept


def _input_clause(notes: list[str]) -> str:
    """The summary's last sentence: what the table lacked or got wrong, so nobody quotes a figure
    without it.  One sentence of the notes' heads (their first sentence, without examples in
    brackets); the whole notes open the notes list (HTML, JSON), where their counts and examples fit."""
    if not notes:
        return ""
    heads = []
    for note in notes:
        head = re.sub(r"\s*\([^)]*\)", "", note)
        head = re.split(r"(?<!e\.g)(?<!i\.e)[.!?](?:\s|$)", head, maxsplit=1)[0].strip().rstrip(".;:")
        heads.append(head)
    many = len(notes) > 1
    return (f" The input table has {len(notes)} problem{'s' if many else ''}, listed first under Notes: "
            + "; ".join(heads) + ".")


def _parity_applies(task: TaskData, attribute: str) -> bool:
    return task.name not in attribute.split(SEPARATOR)


def _audit_attribute(task: TaskData, prep: _Prepared, attribute: str, all_codes: np.ndarray, uniques: list,
                     config: AuditConfig, out: _Collector, notes: list[str]) -> None:
    known = prep.valid & (all_codes >= 0)
    if not known.any():
        notes.append(f"Task {task.name!r} has no labelled row with a known {attribute}; nothing to report there.")
        return
    present = np.flatnonzero(np.bincount(all_codes[known], minlength=len(uniques)) > 0)
    order = group_order(attribute, [uniques[i] for i in present])
    remap = np.full(len(uniques) + 1, -1, dtype=np.int64)  # the trailing slot catches code -1
    position = {g: i for i, g in enumerate(order)}
    remap[present] = [position[uniques[i]] for i in present]
    codes = np.where(known, remap[all_codes], -1)
    classification = task.kind == "classification"
    use_scores = classification and prep.scored is not None and bool(prep.scored[known].all())
    if classification:
        cells = C.classification_cells(codes, len(order), prep.true_idx, prep.pred_idx, task.classes,
                                       task.positive_class, prep.conf_bin if use_scores else None,
                                       prep.confidence, config.n_bins, prep.scores if use_scores else [])
        point = derive_aggregates(C.classification_point(cells), task)
        sizes = cells.sizes.astype(int)
        if use_scores:
            out.auc_bound = max(out.auc_bound, C.auc_bound(cells))
    else:
        cells = C.regression_cells(codes, len(order), prep.errors, prep.error_bin, prep.n_error_bins)
        point = C.regression_point(cells)
        sizes = cells.counts.sum(axis=1).astype(int)
    flagged = sizes < config.min_group_size

    replicates = _bootstrap(task, attribute, cells, order, point, config)
    if not replicates:
        replicates = {k: np.empty((0, len(order))) for k in point}
    support: dict[str, np.ndarray] = {}
    thin: dict[str, np.ndarray] = {}
    shown, shown_reps = point, replicates
    if classification:
        positives = cells.confusion.sum(axis=2)  # (groups, classes) true-label counts
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
        eligible = ~flagged
        rng = B.stream(config.seed, "test", task.name, attribute)
        if classification:
            tests = judge.classification_tests(cells, eligible, thin, _parity_applies(task, attribute), order, rng)
        else:
            tests = judge.regression_tests(cells, eligible, order)
        _gaps(task, attribute, order, point, replicates, flagged, thin, support, tests, config, out)
    if classification:
        _tables(task, attribute, cells, order, flagged, use_scores, config, out)


def _bootstrap(task: TaskData, attribute: str, cells, order: list[str], point: dict[str, np.ndarray],
               config: AuditConfig) -> dict[str, np.ndarray]:
    """Replicates (n_boot, groups) of every metric: each group's cells drawn from its own stream."""
    if config.n_boot == 0:
        return {}
    columns: dict[str, np.ndarray] = {}
    for gi, group in enumerate(order):
        rng = B.stream(config.seed, task.name, attribute, group)
        if task.kind == "classification":
            reps = C.classification_group_replicates(cells, gi, rng, config.n_boot)
        else:
            reps = C.regression_group_replicates(cells, gi, rng, config.n_boot)
        for key, values in reps.items():
            columns.setdefault(key, np.full((config.n_boot, len(order)), np.nan))[:, gi] = values
    return columns


def _cell_label(task: TaskData, key: str, group: str, support: int) -> str:
    name, cls = split_key(key)
    rate = name.split("_")[0].upper()
    what = rate if task.positive_class is not None else f"{rate} of {cls}"
    return f"{what} in {group.replace(SEPARATOR, ' / ')} (n={support})"


def _pair_interval(metric: str, kind: str, worst: Optional[str], best: Optional[str], kept: list[str],
                   replicates: dict, eligible: np.ndarray, level: float) -> tuple[float, float]:
    """CI of the difference between the two groups a spread gap names (worst minus best, signed so
    that the point estimate is the gap): resampled as a difference, not read off two intervals."""
    basis = _GAP_BASIS.get(metric)
    if basis is None or not metric.endswith("_difference") or worst is None or best is None:
        return np.nan, np.nan
    key, higher_is_better = basis
    if key not in replicates or len(replicates[key]) == 0:
        return np.nan, np.nan
    values = replicates[key][:, eligible]
    w, b = kept.index(worst.split(", ")[0]), kept.index(best.split(", ")[0])
    diff = values[:, b] - values[:, w] if higher_is_better else values[:, w] - values[:, b]
    low, high = B.percentile_interval(diff[:, None], level)
    return float(low[0]), float(high[0])


def _gaps(task: TaskData, attribute: str, order: list[str], point: dict, replicates: dict, flagged: np.ndarray,
          thin: dict[str, np.ndarray], support: dict[str, np.ndarray], tests: dict, config: AuditConfig,
          out: _Collector) -> None:
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
        pair_low, pair_high = _pair_interval(metric, task.kind, worst, best, kept, replicates, eligible,
                                             config.ci_level)
        test, primary = judge.test_for(metric, task.kind, tests) if cls is None and len(kept) >= 2 else (None, False)
        out.tests.append((test, primary))
        out.gaps.append({"task": task.name, "attribute": attribute, "metric": metric, "class": cls,
                         "value": float(value[0]), "ci_low": float(low[0]), "ci_high": float(high[0]),
                         "difference_ci_low": pair_low, "difference_ci_high": pair_high,
                         "n_groups": len(kept), "worst_group": worst, "best_group": best,
                         "excluded_groups": excluded, "excluded_cells": ", ".join(lost), "complete": not lost,
                         "note": extra})


def _tables(task: TaskData, attribute: str, cells, order: list[str], flagged: np.ndarray, use_scores: bool,
            config: AuditConfig, out: _Collector) -> None:
    """Confusion matrices and reliability bins per group, read off the cell counts."""
    edges = bin_edges(config.n_bins)
    for gi, (group, is_flagged) in enumerate(zip(order, flagged)):
        matrix = cells.confusion[gi]
        for i, true in enumerate(task.classes):
            for j, pred in enumerate(task.classes):
                out.confusion.append({"task": task.name, "attribute": attribute, "group": group, "true": true,
                                      "pred": pred, "count": int(matrix[i, j])})
        if not use_scores:
            continue
        n = cells.calib[gi].sum(axis=0)
        correct = cells.calib[gi, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf = cells.conf_sum[gi].sum(axis=0) / n
            accuracy = correct / n
        for b in range(config.n_bins):
            out.calibration.append({"task": task.name, "attribute": attribute, "group": group, "bin": b,
                                    "bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "n": int(n[b]),
                                    "mean_confidence": float(mean_conf[b]), "accuracy": float(accuracy[b]),
                                    "flagged": bool(is_flagged)})
