"""Acting on ``facefair clean``'s files at training time, without touching the data.

- ``exclude``: files listing images (``label_issues.csv``, or any CSV with a ``path`` column).
  A row with a ``task`` blanks only that task's label (the image still trains its other tasks:
  the masked losses skip a missing label); a row without one leaves the image out.  Files with
  an ``is_label_issue`` column (``label_scores.csv``) count only the flagged rows.
- ``relabel``: ``label_issues.csv`` files whose ``suggested_label`` replaces the given label.
- ``downweight``: the listed labels keep training at ``downweight_factor`` of a row's loss weight
  (column ``label_weight:TASK``; a row without a task weighs the whole image, ``label_weight``).
  Softer than masking when the flags are only ranked suspicions: a flagged label that was right
  still teaches a little.

Only training rows change: validation and test keep their labels, so runs with and without
these options are scored on the same untouched rows.  What was changed is returned row by row
(and written to ``RUN/data_actions.csv``), so every action can be read and undone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.data.splits import match_paths, read_groups

ACTION_COLUMNS = ["path", "task", "action", "old_label", "new_label", "weight", "source"]
#: the split label of a row held out of train, val and test alike (``hold_out``)
HELD_OUT = "excluded"
#: the per-label loss weight column of a task (the whole image: ``LABEL_WEIGHT`` alone)
LABEL_WEIGHT = "label_weight"


def label_weight_column(task: str | None) -> str:
    return LABEL_WEIGHT if task is None else f"{LABEL_WEIGHT}:{task}"


def _listed(path: str | Path, needs: Sequence[str] = ("path",)) -> pd.DataFrame:
    listed = pd.read_csv(path)
    missing = [c for c in needs if c not in listed]
    if missing:
        raise ValueError(f"{path}: needs column(s) {', '.join(missing)}; has {', '.join(listed.columns)}")
    if "is_label_issue" in listed:
        listed = listed[listed["is_label_issue"].astype(str).str.lower().isin(("true", "1"))]
    return listed.reset_index(drop=True)


def apply_actions(frame: pd.DataFrame, root: str | Path | None, *, exclude: Sequence[str] = (),
                  relabel: Sequence[str] = (), downweight: Sequence[str] = (), downweight_factor: float = 0.3,
                  splits: Sequence[str] = ("train",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` (with ``split``) after the exclusions, relabels and down-weights, and the actions taken."""
    if not 0.0 <= downweight_factor <= 1.0:
        raise ValueError(f"downweight_factor must be in [0, 1] (0 masks the label), got {downweight_factor}")
    frame = frame.copy()
    actions: list[dict] = []
    editable = frame["split"].isin(splits).to_numpy()
    drop = pd.Series(False, index=frame.index)
    jobs = ([(f, ("path",), "exclude") for f in exclude] + [(f, ("path", "task", "suggested_label"), "relabel")
                                                             for f in relabel]
            + [(f, ("path",), "downweight") for f in downweight])
    for source, needs, kind in jobs:
        is_relabel = kind == "relabel"
        listed = _listed(source, needs)
        if not len(listed):
            continue
        for task, rows in (listed.groupby("task") if "task" in listed else [(None, listed)]):
            if task is not None and task not in frame:
                raise ValueError(f"{source}: task {task!r} is not a column of this data")
            position = match_paths(rows["path"].reset_index(drop=True), frame["path"], root).to_numpy()
            hit = position >= 0
            targets = frame.index[position[hit]]
            keep = editable[position[hit]]
            targets, chosen = targets[keep], rows[hit][keep]
            if kind == "downweight":
                column = label_weight_column(task)
                if column not in frame:
                    frame[column] = 1.0
                frame.loc[targets, column] = downweight_factor
                actions += [{"path": frame.at[i, "path"], "task": task or "", "action": "down-weighted",
                             "old_label": "" if task is None else frame.at[i, task], "new_label": "",
                             "weight": downweight_factor, "source": str(source)} for i in targets]
                continue
            if task is None:
                drop.loc[targets] = True
                actions += [{"path": frame.at[i, "path"], "task": "", "action": "excluded image", "old_label": "",
                             "new_label": "", "weight": "", "source": str(source)} for i in targets]
                continue
            old = frame.loc[targets, task].astype(object)
            new = chosen["suggested_label"].to_numpy(dtype=object) if is_relabel else [None] * len(targets)
            frame[task] = frame[task].astype(object)
            frame.loc[targets, task] = new
            actions += [{"path": frame.at[i, "path"], "task": task,
                         "action": "relabelled" if is_relabel else "label masked", "old_label": o,
                         "new_label": "" if n is None else n, "weight": "", "source": str(source)}
                        for i, o, n in zip(targets, old, new)]
    frame = frame[~drop].reset_index(drop=True)
    return frame, pd.DataFrame(actions, columns=ACTION_COLUMNS)


def listed_rows(paths: Sequence[str] | pd.Series, listed_file: str | Path, root: str | Path | None, *,
                task: Optional[str] = None) -> np.ndarray:
    """Which of ``paths`` a file of ``facefair clean`` (or any CSV with ``path``) lists.

    Parameters
    ----------
    paths : sequence of str
        A table's images (absolute, or relative to ``root``).
    listed_file : str or Path
        ``label_issues.csv``, ``label_scores.csv`` (only its ``is_label_issue`` rows count) or any
        CSV with a ``path`` column; paths in it relative to ``root`` or absolute.
    root : str or Path or None
        The data folder both tables' relative paths start from (``data.splits.data_root``).
    task : str, optional
        Count only the file's rows of this ``task`` (when it has a ``task`` column).

    Returns
    -------
    numpy.ndarray
        One bool per path: listed or not.  Paths are matched by their place under ``root``, so
        ``train/1.jpg`` and ``val/1.jpg`` stay two images (``data.splits.match_paths``).
    """
    listed = _listed(listed_file)
    if task is not None and "task" in listed:
        listed = listed[listed["task"] == task]
    return match_paths(paths, listed["path"].reset_index(drop=True), root).to_numpy() >= 0


def copies_across(paths: Sequence[str] | pd.Series, split: Sequence[str] | pd.Series, duplicates_file: str | Path,
                  root: str | Path | None, *, side: str = "train",
                  others: Sequence[str] = ("val", "test")) -> np.ndarray:
    """Which ``side`` rows have a near-duplicate (``facefair clean --duplicates``) in one of ``others``.

    Parameters
    ----------
    paths, split : sequences of str
        Each image and its split (a saved ``splits.csv``'s columns).
    duplicates_file : str or Path
        ``duplicates.csv`` (``path`` and ``cluster``).
    root : str or Path or None
        The data folder relative paths start from.
    side : str
        The split whose rows are returned.
    others : sequence of str
        The splits a copy must reach.

    Returns
    -------
    numpy.ndarray
        One bool per row: a ``side`` row whose cluster also holds a row of ``others``.
    """
    split = pd.Series(list(split), dtype=object)
    cluster = read_groups(duplicates_file, pd.Series(list(paths)), root)
    reaching = set(cluster[split.isin(others).to_numpy() & cluster.notna().to_numpy()])
    return ((split == side).to_numpy() & cluster.isin(reaching).to_numpy() & cluster.notna().to_numpy())


def hold_out(splits: pd.DataFrame, rows: np.ndarray | pd.Series) -> pd.DataFrame:
    """``splits`` (``path``, ``split``) with ``rows`` moved to ``HELD_OUT``: out of train, val and
    test alike, so a run trained on it skips them and is still scored on the same test rows."""
    rows = np.asarray(rows, dtype=bool)
    return splits.assign(split=splits["split"].where(~rows, HELD_OUT))
