"""Reading a predictions table into tasks and sensitive groups.

The table may come from ``facefair evaluate`` or from any third-party model, so spellings are
normalised (``female`` -> ``Female``), missing pieces are tolerated and every thing left out is
reported as a note rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from facefair import labels as L
from facefair import table as T
from facefair.labels import ATTRIBUTES
from facefair.table import TASK_ORDER

_NORMALIZERS: dict[str, Callable[[object], Optional[str]]] = {
    "gender": L.normalize_gender, "race": L.normalize_race, "age_group": L.normalize_age_group,
}

# One canonical order per vocabulary so tables and plots always list groups the same way.
_CANONICAL: dict[str, tuple[str, ...]] = {
    "gender": L.GENDERS,
    "age_group": L.AGE_GROUPS,
    "race": tuple(dict.fromkeys(L.RACE_SCHEMES["race7"] + L.RACE_SCHEMES["race5"])),
}

SEPARATOR = ":"  # joins attribute names ("race:gender") and group values ("Black:Female")


@dataclass
class TaskData:
    name: str
    kind: str  # "classification" or "regression"
    classes: tuple[str, ...]
    y_true: np.ndarray  # object (labels) or float (years), one per table row
    y_pred: np.ndarray
    valid: np.ndarray  # bool: labelled and predicted
    proba: Optional[np.ndarray] = None  # (rows, len(prob_classes)), NaN rows where absent
    prob_classes: tuple[str, ...] = ()
    positive_class: Optional[str] = None

    @property
    def n(self) -> int:
        return int(self.valid.sum())

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Class index of each label, -1 where it is none of ``classes`` (or missing)."""
        return _lookup(values, self.classes)

    def confidence(self) -> Optional[np.ndarray]:
        """Probability the model gave to the label it predicted (NaN where it gave none)."""
        if self.proba is None:
            return None
        column = _lookup(self.y_pred, self.prob_classes)
        out = np.full(len(column), np.nan)
        known = column >= 0
        out[known] = self.proba[np.flatnonzero(known), column[known]]
        return out


def _lookup(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    # factorize once instead of a dict look-up per row: 10M rows in a fraction of a second
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    position = {c: i for i, c in enumerate(vocabulary)}
    mapped = np.array([position.get(u, -1) for u in uniques] + [-1], dtype=np.int64)
    return mapped[codes]  # code -1 (missing) picks the trailing -1


#: Columns the audit reads besides the task columns: ``path`` pairs runs, finds gallery images and
#: (with ``face_index``, or a robustness condition's ``corruption``/``severity``) tells repeated rows.
_KEPT_COLUMNS = (*ATTRIBUTES, "path", "face_index", "corruption", "severity")


def _used_column(name: str) -> bool:
    return name in _KEPT_COLUMNS or name.endswith(("_true", "_pred", "_pred_raw")) or "_prob_" in name


def load_predictions(path: str | Path, notes: Optional[list[str]] = None) -> tuple[pd.DataFrame, str]:
    """A predictions CSV, or a run folder holding ``predictions.csv``, read by
    :func:`facefair.table.read_predictions` (``notes`` receives what the reader changed, and
    ``frame.attrs["notes"]`` keeps it for the audit).

    Only the columns the audit reads are kept (tasks, probabilities, attributes, ``path``): with
    pyarrow installed a 10M-row table reads in seconds."""
    notes = notes if notes is not None else []
    frame = T.read_predictions(path, usecols=_used_column, notes=notes)
    frame.attrs["notes"] = list(notes)
    return frame, frame.attrs["source"]


def normalize_labels(values: pd.Series, vocabulary: Optional[str]) -> np.ndarray:
    """Canonical labels (object array, None where missing); unknown spellings are kept as written."""
    normalizer = _NORMALIZERS.get(vocabulary or "")
    # Each distinct spelling is normalised once; rows only index the result.
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped: list[Optional[str]] = []
    for value in uniques:
        if L.is_missing(value):
            mapped.append(None)
            continue
        text = str(value).strip()
        canonical = normalizer(text) if normalizer else None
        mapped.append(canonical if canonical is not None else text)
    table = np.empty(len(mapped) + 1, dtype=object)
    table[:-1] = mapped
    table[-1] = None  # code -1: missing
    return table[codes]


def _rank(vocabulary: Optional[str], values: Sequence[str]) -> dict[str, int]:
    known = _CANONICAL.get(vocabulary or "", ())
    if vocabulary == "race":
        # The smallest scheme that holds every value keeps its own order (UTK's Asian before Indian).
        for scheme in ("race4", "race5", "race7"):
            if set(values) <= set(L.RACE_SCHEMES[scheme]):
                known = L.RACE_SCHEMES[scheme]
                break
    return {v: i for i, v in enumerate(known)}


def canonical_order(vocabulary: Optional[str], values: Sequence[str]) -> list[str]:
    rank = _rank(vocabulary, values)
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, copy=True)


def detect_tasks(frame: pd.DataFrame, wanted: Optional[Sequence[str]], positive_classes: dict[str, str],
                 notes: list[str]) -> list[TaskData]:
    """The audited tasks of ``frame``; what the table lacks or gets wrong is told in ``notes``
    (rows without a true label, probabilities that cannot be trusted, impossible ages)."""
    names = [c[: -len("_pred")] for c in frame.columns if c.endswith("_pred")]
    names = sorted(set(names), key=lambda n: (TASK_ORDER.index(n) if n in TASK_ORDER else len(TASK_ORDER), n))
    if wanted is not None:
        missing = [n for n in wanted if n not in names]
        if missing and len(missing) == len(set(wanted)):
            raise ValueError(f"unknown task{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}: "
                             f"the table has predictions for {', '.join(names) or 'no task'}")
        if missing:
            notes.append(f"Tasks asked for but without predictions in the table: {', '.join(missing)} "
                         f"(it has {', '.join(names)}).")
        names = [n for n in names if n in wanted]
    tasks = []
    for name in names:
        if f"{name}_true" not in frame:
            notes.append(f"Task {name!r} has predictions but no {name}_true column, so it cannot be audited.")
            continue
        task = _read_task(frame, name, positive_classes, notes)
        if task.n == 0:
            notes.append(f"Task {name!r} has no row with both a true label and a prediction; left out.")
            continue
        unpredicted = int((_present(task.y_true) & ~_present(task.y_pred)).sum())
        if unpredicted:
            notes.append(f"Task {name!r}: {unpredicted} labelled rows have no prediction (e.g. unreadable images) "
                         "and are left out.")
        unlabelled = int((~_present(task.y_true) & _present(task.y_pred)).sum())
        if unlabelled:
            notes.append(f"Task {name!r}: {unlabelled} predicted rows have no true label ({name}_true empty or "
                         f"a missing-value token such as '?' or 'unknown') and are left out of its figures.")
        if task.kind == "classification" and task.proba is None and not T.probability_columns(frame, name):
            notes.append(f"Task {name!r} has no {name}_prob_<class> columns: calibration (ECE) and ROC-AUC "
                         "are skipped for it.")
        tasks.append(task)
    return tasks


def _present(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    return np.not_equal(values, None)


def _read_task(frame: pd.DataFrame, name: str, positive_classes: dict[str, str],
               notes: Optional[list[str]] = None) -> TaskData:
    notes = notes if notes is not None else []
    prob_columns = T.probability_columns(frame, name)
    if T.is_regression(frame, name):
        y_true, y_pred = _numeric(frame[f"{name}_true"]), _numeric(frame[f"{name}_pred"])
        if name in T.REGRESSION_TASKS:
            _drop_impossible_ages(name, y_true, y_pred, notes)
        return TaskData(name, "regression", (), y_true, y_pred, ~np.isnan(y_true) & ~np.isnan(y_pred))
    vocabulary = name if name in _NORMALIZERS else None
    y_true = normalize_labels(frame[f"{name}_true"], vocabulary)
    y_pred = normalize_labels(frame[f"{name}_pred"], vocabulary)
    valid = _present(y_true) & _present(y_pred)
    proba, prob_classes = None, ()
    if prob_columns:
        raw = [c[len(f"{name}_prob_"):] for c in prob_columns]
        prob_classes = tuple(normalize_labels(pd.Series(raw), vocabulary))
        proba = np.column_stack([_numeric(frame[c]) for c in prob_columns])
    seen = list(pd.unique(np.concatenate([y_true[valid], y_pred[valid]])))
    # One class order whether or not the table has probability columns (and whatever their order):
    # the resampled cells follow it, so an interval must not depend on it.
    classes = tuple(canonical_order(vocabulary, seen + [c for c in prob_classes if c not in seen]))
    if proba is not None:
        # Post-processed tables (group thresholds, logit adjustment) keep the model's own label in T_pred_raw:
        # that is the label the probabilities must agree with.
        decided = (normalize_labels(frame[f"{name}_pred_raw"], vocabulary) if f"{name}_pred_raw" in frame
                   else y_pred)
        check = T.check_probabilities(proba, prob_classes, np.where(valid, decided, None), classes, name)
        if not check.usable:
            notes.append(check.note())
            proba, prob_classes = None, ()
    positive = None
    if len(classes) == 2:
        wanted = positive_classes.get(name)
        positive = wanted if wanted in classes else classes[1]
    return TaskData(name, "classification", classes, y_true, y_pred, valid, proba, prob_classes, positive)


def _drop_impossible_ages(name: str, y_true: np.ndarray, y_pred: np.ndarray, notes: list[str]) -> None:
    """True ages no person has, and predictions that are no age at all (a lifetime beyond the
    range: a unit or export bug), become missing with a note, since one would dominate every mean
    error.  Predictions merely outside the range (an infant guessed at -3) are the model's errors:
    counted, and told."""
    def examples(values: np.ndarray) -> str:
        return ", ".join(f"{v:g}" for v in values[:3])

    top = L.MAX_AGE_YEARS
    dropped = []
    bad_truth = T.implausible_ages(y_true)
    if bad_truth.any():
        dropped.append(f"{int(bad_truth.sum())} in {name}_true (e.g. {examples(y_true[bad_truth])})")
        y_true[bad_truth] = np.nan
    absurd = T.implausible_ages(y_pred, slack=top)
    outside = T.implausible_ages(y_pred) & ~absurd
    if absurd.any():
        dropped.append(f"{int(absurd.sum())} in {name}_pred (e.g. {examples(y_pred[absurd])}: no age a model "
                       f"of ages gives, beyond -{top} to {2 * top} years)")
        y_pred[absurd] = np.nan
    if dropped:
        notes.append(f"Task {name!r}: impossible ages, {'; '.join(dropped)}; those rows are left out of its figures "
                     "(MAE, mean error).")
    if outside.any():
        notes.append(f"Task {name!r}: {int(outside.sum())} predicted ages are outside 0-{top} years (e.g. "
                     f"{examples(y_pred[outside])}); they are the model's errors and count in its figures.")


def attribute_values(frame: pd.DataFrame, attributes: Sequence[str], intersections: Sequence[Sequence[str]],
                     notes: list[str]) -> dict[str, np.ndarray]:
    """Per audited attribute (single or intersection) the group of every row, None where unknown."""
    single: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(list(attributes) + [a for parts in intersections for a in parts]):
        if name in frame:
            values = normalize_labels(frame[name], name if name in _NORMALIZERS else None)
        elif name == "age_group" and "age_true" in frame:
            # Third-party tables often have exact ages only; FairFace's groups follow from them.
            values = np.array([L.age_to_group(y) for y in _numeric(frame["age_true"])], dtype=object)
            notes.append("No age_group column: age groups were derived from age_true.")
        else:
            notes.append(f"Attribute {name!r} is not in the table; it is left out of the audit.")
            continue
        if not _present(values).any():
            notes.append(f"Attribute {name!r} is empty in every row; it is left out of the audit.")
            continue
        _note_unknown_spellings(name, values, notes)
        single[name] = values
    out: dict[str, np.ndarray] = {a: single[a] for a in attributes if a in single}
    for parts in intersections:
        if not all(p in single for p in parts):
            continue
        out[SEPARATOR.join(parts)] = _intersect([single[p] for p in parts])
    for name, values in out.items():
        unknown = int((~_present(values)).sum())
        if unknown:
            notes.append(f"Attribute {name!r} is unknown for {unknown} of {len(values)} rows; those rows count in "
                         "overall figures only.")
    return out


def _intersect(columns: list[np.ndarray]) -> np.ndarray:
    """Row-wise ``A:B`` labels, None where any part is unknown; built per distinct combination."""
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    missing = np.zeros(len(columns[0]), dtype=bool)
    parts = []
    for column in columns:
        codes, uniques = pd.factorize(column)
        missing |= codes < 0
        combined = combined * (len(uniques) + 1) + np.maximum(codes, 0)
        parts.append((codes, list(uniques)))
    combined[missing] = -1
    keys, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    labels = np.empty(len(keys), dtype=object)
    for i, (key, row) in enumerate(zip(keys, first)):
        labels[i] = None if key < 0 else SEPARATOR.join(uniques[codes[row]] for codes, uniques in parts)
    return labels[inverse.reshape(-1)]


def _note_unknown_spellings(name: str, values: np.ndarray, notes: list[str]) -> None:
    """Values no normaliser recognises stay groups of their own (a third party's own category may be
    meant), but are named, since a typo or an unlisted 'missing' spelling would be one too."""
    known = _CANONICAL.get(name)
    if not known:
        return
    counts = pd.Series(values, dtype=object).value_counts()  # missing (None) values are not counted
    counts = counts[[value not in known for value in counts.index]]
    if len(counts):
        listed = ", ".join(f"{value!r} ({n} rows)" for value, n in counts.head(5).items())
        notes.append(f"Attribute {name!r} has values outside its vocabulary: {listed}; each is audited as a group "
                     f"of its own (missing values are spelled as one of {', '.join(map(repr, _MISSING_EXAMPLES))}).")


_MISSING_EXAMPLES = ("", "?", "unknown", "NA")


def group_order(attribute: str, groups: Sequence[str]) -> list[str]:
    parts = attribute.split(SEPARATOR)
    if len(parts) == 1:
        return canonical_order(attribute, groups)
    split = [g.split(SEPARATOR) for g in groups]
    ranks = [_rank(p, [values[i] for values in split]) for i, p in enumerate(parts)]

    def key(group: str):
        values = group.split(SEPARATOR)
        return tuple((r.get(v, len(r)), v) for r, v in zip(ranks, values))
    return sorted(set(groups), key=key)


__all__ = ["ATTRIBUTES", "TaskData", "load_predictions", "detect_tasks", "attribute_values", "group_order",
           "normalize_labels", "SEPARATOR"]
