"""The predictions table: the contract every later step reads (metrics, the fairness audit,
comparisons, thresholds, explain galleries, the model card); third-party models can write the
same CSV.  This module is its one reader, writer and checker.

Columns: ``path``, the true attributes ``race``/``gender``/``age_group``, and per task ``T_true``,
``T_pred`` and ``T_prob_<class>`` (classification) or ``age_true``/``age_pred`` (years).
The attribute names hold true labels only: a prediction never takes one (``predict --detect``
writes FairFace's predicted ``race``/``gender``/``age`` as ``race_fair``/``gender_fair``/``age_fair``).
``facefair predict`` adds ``error`` (why an image was not read) and ``note`` (e.g. a face far
smaller than the training chips).

Reading rules (one set for every command):

- separators and encodings as the dataset readers take them (:func:`facefair.data.readers.read_csv_table`:
  comma, semicolon, tab or pipe; UTF-8 with or without a BOM); a file that is not text (a photo)
  is refused as "not a CSV file";
- the missing-label vocabulary of :data:`facefair.labels.MISSING_TOKENS` (``""``, ``?``, ``nan``,
  ``NA``, ``none``, ``unknown``, ...) is missing (NaN) in every column;
- labels stay text (``0-2``, ``3-9`` or UTK's gender codes never become numbers); probability
  columns and exact-age columns are numbers (a value that is not one is missing, and counted);
  any other column that holds only numbers is numeric.

No torch here: numpy and pandas only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from facefair import labels as L
from facefair.labels import ATTRIBUTES
from facefair.tasks import TaskSpec

CLASSIFICATION_TASKS = ("gender", "race", "age_group")
REGRESSION_TASKS = ("age",)
TASK_ORDER = ("gender", "race", "age_group", "age")

#: How far a row's probabilities may sum from 1, and the predicted label's probability fall
#: below the row's largest, before the row counts as inconsistent (CSV rounding stays inside).
SUM_TOLERANCE = 0.02
ARGMAX_TOLERANCE = 1e-3

#: Columns that keep text even when every value looks like a number.
_TEXT_COLUMNS = ("path", "source_photo", "dataset", "split", "error", "note", *ATTRIBUTES)


# -- building the table from model outputs --------------------------------------------------------
def prediction_columns(tasks: Sequence[TaskSpec], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``T_pred`` and ``T_prob_<class>`` per classification task, ``age_pred`` in years; rows
    without outputs (unreadable images) get no prediction."""
    columns: dict[str, np.ndarray] = {}
    for task in tasks:
        out = outputs[task.name]
        if task.kind == "regression":
            columns[f"{task.name}_pred"] = out
            continue
        readable = ~np.isnan(out).any(axis=1)
        pred = np.full(len(out), None, dtype=object)
        pred[readable] = np.asarray(task.classes, dtype=object)[out[readable].argmax(axis=1)]
        columns[f"{task.name}_pred"] = pred
        for i, name in enumerate(task.classes):
            columns[f"{task.name}_prob_{name}"] = out[:, i]
    return columns


def model_outputs(table: pd.DataFrame, tasks: Sequence[TaskSpec]) -> Optional[dict[str, np.ndarray]]:
    """The per-task outputs a table was written from (the inverse of :func:`prediction_columns`):
    class probabilities in ``task.classes`` order, years for a regression task; None where the
    table lacks a task's columns.

    >>> import pandas as pd
    >>> from facefair.tasks import TaskSpec
    >>> race = TaskSpec("race", "race", "classification", ("Asian", "White"))
    >>> table = pd.DataFrame({"race_pred": ["White"], "race_prob_White": [0.7], "race_prob_Asian": [0.3]})
    >>> model_outputs(table, [race])["race"].tolist()
    [[0.3, 0.7]]
    >>> model_outputs(table, [TaskSpec("age", "age", "regression")]) is None
    True
    """
    outputs = {}
    for task in tasks:
        if task.kind == "regression":
            wanted = [f"{task.name}_pred"]
        else:
            wanted = [f"{task.name}_prob_{name}" for name in task.classes]
        if any(column not in table for column in wanted):
            return None
        values = table[wanted].to_numpy(dtype=float)
        outputs[task.name] = values[:, 0] if task.kind == "regression" else values
    return outputs


def predictions_frame(frame: pd.DataFrame, tasks: Sequence[TaskSpec], outputs: dict[str, np.ndarray],
                      extra_columns: Sequence[str] = ("split", "dataset")) -> pd.DataFrame:
    """The predictions table of ``frame``'s rows (path + labels) and the model ``outputs`` per task."""
    columns = {"path": frame["path"].to_numpy()}
    for attribute in ATTRIBUTES:
        if attribute in frame:
            columns[attribute] = frame[attribute].to_numpy()
    for column in extra_columns:
        if column in frame:
            columns[column] = frame[column].to_numpy()
    for task in tasks:
        truth = frame[task.column]
        columns[f"{task.name}_true"] = truth.to_numpy(dtype=float) if task.kind == "regression" else truth.to_numpy()
    predicted = prediction_columns(tasks, outputs)
    # Keep each task's truth, prediction and probabilities side by side.
    ordered = {}
    for key, value in columns.items():
        ordered[key] = value
        if key.endswith("_true"):
            task = key[: -len("_true")]
            ordered.update({k: v for k, v in predicted.items() if k == f"{task}_pred" or k.startswith(f"{task}_prob_")})
    return pd.DataFrame(ordered)


# -- naming ---------------------------------------------------------------------------------------
def probability_columns(frame: pd.DataFrame, task: str) -> list[str]:
    return [c for c in frame.columns if c.startswith(f"{task}_prob_")]


def tasks_in(frame: pd.DataFrame) -> list[str]:
    """Every task with a ``T_pred`` column, in the table's column order."""
    return [c[: -len("_pred")] for c in frame.columns if c.endswith("_pred")]


def classes_of(frame: pd.DataFrame, task: str) -> Optional[list[str]]:
    cols = probability_columns(frame, task)
    return [c[len(f"{task}_prob_"):] for c in cols] or None


def collapse_race_scheme(frame: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """A ``source``-scheme model's race columns read in the coarser ``target`` scheme (a race7 model
    on race5 faces): ``race_prob_<class>`` summed over the source classes each target class holds,
    ``race_pred`` the model's own decision mapped (a decision with no target class, e.g. Latino_Hispanic
    in race4, keeps its name and counts as wrong for every face)."""
    from facefair.labels import RACE_MAPPINGS, RACE_SCHEMES

    mapping = RACE_MAPPINGS[(source, target)]
    out = frame.copy()
    if "race_pred" not in out:
        return out
    out["race_pred"] = out["race_pred"].map(lambda p: p if not isinstance(p, str) else (mapping.get(p) or p))
    old = probability_columns(out, "race")
    summed = {f"race_prob_{c}": sum((out[f"race_prob_{s}"].astype(float) for s in RACE_SCHEMES[source]
                                     if mapping.get(s) == c and f"race_prob_{s}" in out), 0.0 * out[old[0]].astype(float))
              for c in RACE_SCHEMES[target]} if old else {}
    position = out.columns.get_loc(old[0]) if old else len(out.columns)
    out = out.drop(columns=old)
    for offset, (name, values) in enumerate(summed.items()):
        out.insert(position + offset, name, values)
    return out


def _all_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    return not pd.to_numeric(present, errors="coerce").isna().any()


def is_regression(frame: pd.DataFrame, task: str) -> bool:
    """Exact-valued task (years): ``age``, or a task no table row names a class of (no probability
    columns, every prediction a number)."""
    if task in REGRESSION_TASKS:
        return True
    if task in CLASSIFICATION_TASKS or probability_columns(frame, task) or f"{task}_pred" not in frame:
        return False
    return _all_numeric(frame[f"{task}_pred"])


# -- reading and writing ---------------------------------------------------------------------------
def locate(path: str | Path) -> Path:
    """The predictions CSV that ``path`` names: the file itself, or the table inside a run folder."""
    from facefair.run import Run

    path = Path(path)
    if path.is_dir():
        candidate = Run(path).predictions_path
        if not candidate.is_file():
            found = sorted(str(p.parent.relative_to(path)) for p in path.glob(f"*/{candidate.name}"))
            hint = f"; found one in {', '.join(found)}" if found else ""
            raise FileNotFoundError(f"{path} has no {candidate.name}{hint}")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"no predictions CSV at {path}")
    return path


def _missing_mask(values: pd.Series) -> np.ndarray:
    """True where a value is missing: each distinct spelling is judged once (tables run to millions of rows)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    missing = np.append(np.array([L.is_missing(u) for u in uniques], dtype=bool), True)
    return missing[codes]  # code -1 (NaN) picks the trailing True


def _numeric_by_name(column: str) -> bool:
    return "_prob_" in column or column in ("age_true", "age_pred")


def _read_fast(source: Path, header: pd.DataFrame, columns: list[str]) -> Optional[pd.DataFrame]:
    """pyarrow's multi-threaded reader, probabilities and ages parsed as numbers on the way; None
    when pyarrow is absent or the numbers hold text (missing tokens, decimal commas), which the
    text path then reads and reports."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    dtype = {c: ("float64" if _numeric_by_name(c) else str) for c in columns}
    try:
        return pd.read_csv(source, engine="pyarrow", sep=header.attrs.get("sep", ","), usecols=columns, dtype=dtype,
                           keep_default_na=False, na_values=[""])
    except Exception:  # noqa: BLE001 - any parse problem: the text reader below says what it is
        return None


def read_predictions(path: str | Path, *, usecols: "Optional[Sequence[str] | Callable[[str], bool]]" = None,
                     notes: Optional[list[str]] = None) -> pd.DataFrame:
    """A predictions table (a CSV, or a run folder's ``predictions.csv``) under this module's rules.

    Parameters
    ----------
    path : str or Path
        The CSV, or a folder holding ``predictions.csv``.
    usecols : sequence of str, or callable, optional
        Read only these columns (those the file lacks are ignored), or those for which
        ``usecols(name)`` is true: a large table reads faster.
    notes : list of str, optional
        Receives one line per thing the reader changed (separator, values that are not numbers).

    Returns
    -------
    pandas.DataFrame
        ``frame.attrs["source"]`` is the file read.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"path": ["a.jpg"], "gender_true": ["?"], "gender_pred": ["Female"],
    ...               "gender_prob_Female": [0.9]}).to_csv(os.path.join(folder, "p.csv"), index=False)
    >>> frame = read_predictions(os.path.join(folder, "p.csv"))
    >>> frame["gender_true"].isna().item(), float(frame["gender_prob_Female"].iloc[0])
    (True, 0.9)
    """
    from facefair.data.readers import read_csv_table

    source = locate(path)
    notes = notes if notes is not None else []
    header = read_csv_table(source, nrows=0)  # refuses a photo, finds the separator
    sep = header.attrs.get("sep", ",")
    if usecols is None:
        columns = list(header.columns)
    else:
        keep = usecols if callable(usecols) else set(usecols).__contains__
        columns = [c for c in header.columns if keep(c)]
    frame = _read_fast(source, header, columns)
    if frame is None:
        frame = read_csv_table(source, usecols=columns)
    if sep != ",":
        notes.append(f"{source.name} is {_SEPARATOR_NAMES.get(sep, repr(sep))}-separated; read as such.")
    for column in frame.columns:
        if frame[column].dtype.kind == "f":
            continue  # parsed as a number already: empty cells are NaN
        values = frame[column].mask(_missing_mask(frame[column]))
        frame[column] = values
        if column in _TEXT_COLUMNS or _is_label_column(frame, column):
            continue
        if sep == ";":  # Excel's semicolon CSVs write decimals with a comma
            values = values.str.replace(r"^(-?\d*),(\d+)$", r"\1.\2", regex=True)
        numbers = pd.to_numeric(values, errors="coerce")
        text = numbers.isna() & values.notna()
        if _numeric_column(frame, column):
            if text.any():
                notes.append(f"{column}: {int(text.sum())} values are not numbers (e.g. {values[text].iloc[0]!r}); "
                             "read as missing.")
            frame[column] = numbers.astype(float)
        elif values.notna().any() and not text.any():
            frame[column] = numbers
    frame.attrs["source"] = str(source)
    return frame


_SEPARATOR_NAMES = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _task_of(column: str) -> Optional[str]:
    for suffix in ("_true", "_pred_raw", "_pred"):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return None


def _is_label_column(frame: pd.DataFrame, column: str) -> bool:
    task = _task_of(column)
    return task is not None and f"{task}_pred" in frame and not is_regression(frame, task)


def _numeric_column(frame: pd.DataFrame, column: str) -> bool:
    if re.search(r"_prob_", column):
        return True
    task = _task_of(column)
    return task is not None and f"{task}_pred" in frame and is_regression(frame, task)


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the table atomically (a reader never sees half a file); missing values are empty cells."""
    from facefair.runtime import write_atomic
    path = Path(path)
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return path


# -- checks ----------------------------------------------------------------------------------------
@dataclass
class ProbabilityCheck:
    """What is wrong with one task's probability columns (counts of rows with a prediction)."""
    task: str
    rows: int = 0                 # rows with a prediction and probabilities
    out_of_range: int = 0         # some probability below 0 or above 1
    bad_sum: int = 0              # probabilities of all classes not summing to 1
    disagree: int = 0             # the predicted label is not the most probable class
    complete: bool = True         # a column for every class (else sums are not checked)
    examples: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not (self.out_of_range or self.bad_sum or self.disagree)

    def note(self) -> Optional[str]:
        if self.usable:
            return None
        parts = []
        if self.out_of_range:
            parts.append(f"{self.out_of_range} have probabilities outside [0, 1]")
        if self.bad_sum:
            parts.append(f"{self.bad_sum} have probabilities not summing to 1 (beyond ±{SUM_TOLERANCE:g})")
        if self.disagree:
            parts.append(f"{self.disagree} predict a label that is not their most probable class")
        where = f" (e.g. row {', '.join(self.examples)})" if self.examples else ""
        return (f"Task {self.task!r}: of {self.rows} rows with probabilities, {'; '.join(parts)}{where}. "
                "The probabilities are not used: calibration (ECE) and ROC-AUC are withheld for this task; "
                "check how the table was written.")


def check_probabilities(proba: np.ndarray, prob_classes: Sequence[str], predicted: np.ndarray,
                        classes: Sequence[str], task: str) -> ProbabilityCheck:
    """Check one task's probabilities row by row: within [0, 1], summing to 1 when every class has
    a column, and largest for the predicted label.

    Parameters
    ----------
    proba : ndarray of shape (rows, len(prob_classes))
        NaN rows are rows without probabilities and are not checked.
    prob_classes : the class each column is the probability of.
    predicted : object array, the predicted label per row (None where none).
    classes : every class of the task (truths and predictions included).
    """
    check = ProbabilityCheck(task)
    scored = ~np.isnan(proba).all(axis=1) & np.array([p is not None for p in predicted], dtype=bool)
    rows = np.flatnonzero(scored)
    check.rows = len(rows)
    if not len(rows):
        return check
    part = proba[rows]
    out = (np.nan_to_num(part, nan=0.5) < -1e-9).any(axis=1) | (np.nan_to_num(part, nan=0.5) > 1 + 1e-9).any(axis=1)
    check.complete = set(classes) <= set(prob_classes)
    bad_sum = np.zeros(len(rows), dtype=bool)
    disagree = np.zeros(len(rows), dtype=bool)
    if check.complete and len(prob_classes) > 1:
        bad_sum = np.abs(np.nansum(part, axis=1) - 1) > SUM_TOLERANCE
        lookup = {c: i for i, c in enumerate(prob_classes)}
        column = np.array([lookup.get(p, -1) for p in predicted[rows]])
        known = column >= 0
        given = np.full(len(rows), np.nan)
        given[known] = part[np.flatnonzero(known), column[known]]
        disagree = known & (given < np.nanmax(part, axis=1) - ARGMAX_TOLERANCE)
    check.out_of_range, check.bad_sum, check.disagree = int(out.sum()), int(bad_sum.sum()), int(disagree.sum())
    # Row numbers as a spreadsheet shows them (header is line 1).
    check.examples = [str(r + 2) for r in rows[out | bad_sum | disagree][:3]]
    return check


def duplicate_rows(frame: pd.DataFrame) -> np.ndarray:
    """True for every row that repeats an earlier row's image (``path``, and ``face_index`` for
    photos with several faces): the same face counted twice would narrow every interval."""
    if "path" not in frame:
        return np.zeros(len(frame), dtype=bool)
    key = [c for c in ("path", "face_index", "corruption", "severity") if c in frame]
    present = frame["path"].notna().to_numpy()
    return frame.duplicated(subset=key, keep="first").to_numpy() & present


def implausible_ages(values: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """True where an age in years lies outside [-``slack``, ``labels.MAX_AGE_YEARS`` + ``slack``].

    With no slack: no person's age (a true label that cannot be right).  A model's guess may miss
    by a lifetime and still be its error to count (a regression head puts some infants below 0);
    ``slack=MAX_AGE_YEARS`` marks only values that are not an age at all (a unit or export bug)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(values) & ((values < -slack) | (values > L.MAX_AGE_YEARS + slack))


__all__ = ["CLASSIFICATION_TASKS", "REGRESSION_TASKS", "TASK_ORDER", "prediction_columns", "predictions_frame",
           "probability_columns", "tasks_in", "classes_of", "collapse_race_scheme", "is_regression", "locate", "read_predictions",
           "write_predictions", "ProbabilityCheck", "check_probabilities", "duplicate_rows", "implausible_ages"]
