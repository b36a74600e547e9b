"""Running a model over batches and turning its outputs into the predictions table.

The predictions table is the contract every later step reads (metrics, the fairness audit,
comparisons); third-party models can write the same CSV:
``path``, the true attributes ``race``/``gender``/``age_group``, and per task ``T_true``,
``T_pred`` and ``T_prob_<class>`` (classification) or ``age_true``/``age_pred`` (years).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from facefair.data.batches import to_float
from facefair.runtime import autocast_context
from facefair.tasks import TaskSpec

ATTRIBUTES = ("race", "gender", "age_group")


@torch.no_grad()
def predict_batches(model, batches, n_rows: int, device: torch.device, *, tta: bool = True, amp: bool = True,
                    bf16: bool = False, progress=None, rows: Optional[np.ndarray] = None
                    ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Probabilities (classification) or years (age) for every row (or just ``rows``); rows whose
    image could not be read, or that were not asked for, stay NaN; read errors are returned."""
    model.eval()
    outputs = {t.name: np.full((n_rows, t.num_classes) if t.kind == "classification" else (n_rows,), np.nan,
                               dtype=np.float32) for t in model.tasks}
    errors: list[str] = []
    for images, positions, batch_errors in batches.iterate(np.arange(n_rows) if rows is None else rows):
        errors.extend(batch_errors)
        if len(positions) == 0:
            continue
        x = to_float(images, device)
        with autocast_context(device, amp, bf16):
            predicted = model.predict(model(x))
            if tta:  # mirrored faces are equally plausible faces; averaging removes left/right noise
                mirrored = model.predict(model(torch.flip(x, dims=[3])))
                predicted = {k: (v + mirrored[k]) / 2 for k, v in predicted.items()}
        for name, value in predicted.items():
            outputs[name][positions] = value.float().cpu().numpy()
        if progress is not None:
            progress.update(len(positions))
    return outputs, errors


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
