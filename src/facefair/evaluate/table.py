"""The predictions table: the contract every later step reads (metrics, the fairness audit,
comparisons, thresholds); third-party models can write the same CSV.

``path``, the true attributes ``race``/``gender``/``age_group``, and per task ``T_true``,
``T_pred`` and ``T_prob_<class>`` (classification) or ``age_true``/``age_pred`` (years).
No torch here: the table is numpy and pandas only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.labels import ATTRIBUTES
from facefair.tasks import TaskSpec


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


def predictions_frame(frame: pd.DataFrame, tasks: Sequence[TaskSpec], outputs: dict[str, np.ndarray],
                      extra_columns: Sequence[str] = ("split", "dataset")) -> pd.DataFrame:
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


def probability_columns(frame: pd.DataFrame, task: str) -> list[str]:
    return [c for c in frame.columns if c.startswith(f"{task}_prob_")]


def tasks_in(frame: pd.DataFrame) -> list[str]:
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
