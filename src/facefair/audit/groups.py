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
from facefair.labels import ATTRIBUTES

CLASSIFICATION_TASKS = ("gender", "race", "age_group")
REGRESSION_TASKS = ("age",)
TASK_ORDER = ("gender", "race", "age_group", "age")

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


#: Columns the audit reads besides the task columns (``path`` pairs runs and finds gallery images).
_KEPT_COLUMNS = (*ATTRIBUTES, "path")


def _used_columns(header: Sequence[str]) -> list[str]:
    return [c for c in header if c in _KEPT_COLUMNS or c.endswith(("_true", "_pred")) or "_prob_" in c]


def load_predictions(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A predictions CSV, or a run folder holding ``predictions.csv``.

    Only the columns the audit reads are kept (tasks, probabilities, attributes, ``path``); with
    pyarrow installed its multi-threaded reader parses them (a 10M-row table in seconds).
    """
    path = Path(path)
    if path.is_dir():
        candidate = path / "predictions.csv"
        if not candidate.is_file():
            found = sorted(str(p.relative_to(path)) for p in path.glob("*/predictions.csv"))
            hint = f"; found {', '.join(found)}" if found else ""
            raise FileNotFoundError(f"{path} has no predictions.csv{hint}")
        path = candidate
    if not path.is_file():
        raise FileNotFoundError(f"no predictions CSV at {path}")
    # Everything as text first: a column of "0-2"/"3-9" or of gender codes must not become numbers.
    header = list(pd.read_csv(path, nrows=0).columns)
    used = _used_columns(header)
    options = dict(keep_default_na=False, na_values=[""], usecols=used or None)
    try:
        import pyarrow  # noqa: F401  (optional: the C reader below gives the same table)
    except ImportError:
        return pd.read_csv(path, dtype=str, **options), str(path)
    # Probabilities and exact ages parsed as numbers by pyarrow (parsing 20 text columns in pandas
    # costs more than the whole audit); a table with text in them is read as text, as before.
    numeric = {c: "float64" for c in used if "_prob_" in c or c in ("age_true", "age_pred")}
    try:
        frame = pd.read_csv(path, engine="pyarrow", dtype={**{c: str for c in used}, **numeric}, **options)
    except (ValueError, TypeError, pyarrow.ArrowInvalid):
        frame = pd.read_csv(path, engine="pyarrow", dtype=str, **options)
    return frame, str(path)


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
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def detect_tasks(frame: pd.DataFrame, wanted: Optional[Sequence[str]], positive_classes: dict[str, str],
                 notes: list[str]) -> list[TaskData]:
    names = [c[: -len("_pred")] for c in frame.columns if c.endswith("_pred")]
    names = sorted(set(names), key=lambda n: (TASK_ORDER.index(n) if n in TASK_ORDER else len(TASK_ORDER), n))
    if wanted is not None:
        missing = [n for n in wanted if n not in names]
        if missing:
            notes.append(f"Tasks asked for but without predictions in the table: {', '.join(missing)}.")
        names = [n for n in names if n in wanted]
    tasks = []
    for name in names:
        if f"{name}_true" not in frame:
            notes.append(f"Task {name!r} has predictions but no {name}_true column, so it cannot be audited.")
            continue
        task = _read_task(frame, name, positive_classes)
        if task.n == 0:
            notes.append(f"Task {name!r} has no row with both a true label and a prediction; left out.")
            continue
        unpredicted = int((_present(task.y_true) & ~_present(task.y_pred)).sum())
        if unpredicted:
            notes.append(f"Task {name!r}: {unpredicted} labelled rows have no prediction (e.g. unreadable images) "
                         "and are left out.")
        if task.kind == "classification" and task.proba is None:
            notes.append(f"Task {name!r} has no {name}_prob_<class> columns: calibration (ECE) and ROC-AUC "
                         "are skipped for it.")
        tasks.append(task)
    return tasks


def _present(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    return np.not_equal(values, None)


def _read_task(frame: pd.DataFrame, name: str, positive_classes: dict[str, str]) -> TaskData:
    prob_columns = [c for c in frame.columns if c.startswith(f"{name}_prob_")]
    regression = name in REGRESSION_TASKS or (
        name not in CLASSIFICATION_TASKS and not prob_columns
        and not np.isnan(_numeric(frame[f"{name}_pred"].dropna())).any())
    if regression:
        y_true, y_pred = _numeric(frame[f"{name}_true"]), _numeric(frame[f"{name}_pred"])
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
    classes = tuple(prob_classes) + tuple(c for c in canonical_order(vocabulary, seen) if c not in prob_classes)
    if not prob_classes:
        classes = tuple(canonical_order(vocabulary, seen))
    positive = None
    if len(classes) == 2:
        wanted = positive_classes.get(name)
        positive = wanted if wanted in classes else classes[1]
    return TaskData(name, "classification", classes, y_true, y_pred, valid, proba, prob_classes, positive)


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
