"""Acting on ``facefair clean``'s files at training time, without touching the data.

- ``exclude``: files listing images (``label_issues.csv``, or any CSV with a ``path`` column).
  A row with a ``task`` blanks only that task's label (the image still trains its other tasks:
  the masked losses skip a missing label); a row without one leaves the image out.  Files with
  an ``is_label_issue`` column (``label_scores.csv``) count only the flagged rows.
- ``relabel``: ``label_issues.csv`` files whose ``suggested_label`` replaces the given label.

Only training rows change: validation and test keep their labels, so runs with and without
these options are scored on the same untouched rows.  What was changed is returned row by row
(and written to ``RUN/data_actions.csv``), so every action can be read and undone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from facefair.data.splits import match_paths

ACTION_COLUMNS = ["path", "task", "action", "old_label", "new_label", "source"]


def _listed(path: str | Path, needs: Sequence[str] = ("path",)) -> pd.DataFrame:
    listed = pd.read_csv(path)
    missing = [c for c in needs if c not in listed]
    if missing:
        raise ValueError(f"{path}: needs column(s) {', '.join(missing)}; has {', '.join(listed.columns)}")
    if "is_label_issue" in listed:
        listed = listed[listed["is_label_issue"].astype(str).str.lower().isin(("true", "1"))]
    return listed.reset_index(drop=True)


def apply_actions(frame: pd.DataFrame, root: str | Path | None, *, exclude: Sequence[str] = (),
                  relabel: Sequence[str] = (), splits: Sequence[str] = ("train",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` (with ``split``) after the exclusions and relabels, and the actions taken."""
    frame = frame.copy()
    actions: list[dict] = []
    editable = frame["split"].isin(splits).to_numpy()
    drop = pd.Series(False, index=frame.index)
    jobs = [(f, ("path",)) for f in exclude] + [(f, ("path", "task", "suggested_label")) for f in relabel]
    for source, needs in jobs:
        is_relabel = "suggested_label" in needs
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
            if task is None:
                drop.loc[targets] = True
                actions += [{"path": frame.at[i, "path"], "task": "", "action": "excluded image", "old_label": "",
                             "new_label": "", "source": str(source)} for i in targets]
                continue
            old = frame.loc[targets, task].astype(object)
            new = chosen["suggested_label"].to_numpy(dtype=object) if is_relabel else [None] * len(targets)
            frame[task] = frame[task].astype(object)
            frame.loc[targets, task] = new
            actions += [{"path": frame.at[i, "path"], "task": task,
                         "action": "relabelled" if is_relabel else "label masked", "old_label": o,
                         "new_label": "" if n is None else n, "source": str(source)}
                        for i, o, n in zip(targets, old, new)]
    frame = frame[~drop].reset_index(drop=True)
    return frame, pd.DataFrame(actions, columns=ACTION_COLUMNS)
