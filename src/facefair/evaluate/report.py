"""Writing an evaluation: predictions.csv, report.json, confusion matrices, the gender-by-race
table, and one appended row of benchmark_results.csv."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from facefair.inference.engine import blend_face_heads, predict_batches
from facefair.table import predictions_frame
from facefair.evaluate.metrics import (all_task_metrics, gender_rates_by_race, selection_score,
                                       write_confusion_matrices)
from facefair.run import Run


def evaluate_split(model, split, device: torch.device, *, tta: bool, amp: bool, bf16: bool, distributed=None,
                   descriptor_cache: Optional[str] = None, adapt_bn: bool = False):
    """(predictions table, metrics, unreadable-image errors) for one split; under DDP each rank
    predicts its share of the rows and all ranks get the merged result.  A model with face heads
    has its descriptors read from (and cached in) ``descriptor_cache``.  ``adapt_bn``: the CNN's
    BatchNorm statistics re-estimated over the split first (not under DDP)."""
    if adapt_bn and distributed is not None and distributed.enabled:
        raise ValueError("--adapt-bn re-estimates statistics over the whole split; evaluate in one process")
    outputs, errors = split_outputs(model, split, device, tta=tta, amp=amp, bf16=bf16, distributed=distributed,
                                    adapt_bn=adapt_bn)
    return (*score_outputs(model, split.frame, outputs, descriptor_cache), errors)


def split_outputs(model, split, device: torch.device, *, tta: bool, amp: bool, bf16: bool, distributed=None,
                  adapt_bn: bool = False):
    """The network's own outputs for every row of ``split`` (before any face heads) and the
    unreadable-image errors: what :func:`score_outputs` turns into a table, more than once if a
    caller wants the CNN alone as well as the model with its heads."""
    rows = np.arange(len(split.frame))
    if distributed is not None and distributed.enabled:
        rows = rows[distributed.rank::distributed.world_size]
    outputs, errors = predict_batches(model, split.batches, len(split.frame), device, tta=tta, amp=amp, bf16=bf16,
                                      rows=rows, adapt_bn=adapt_bn)
    if distributed is not None and distributed.enabled:
        outputs, errors = distributed.merge_rows(outputs), distributed.gather_list(errors)
    return outputs, errors


def score_outputs(model, frame: pd.DataFrame, outputs: dict[str, np.ndarray], descriptor_cache: Optional[str] = None):
    """(predictions table, metrics) of ``frame``'s rows (a split's path and label columns) from
    :func:`split_outputs`, with the model's face heads (if it has any) blended in."""
    outputs = blend_face_heads(model, outputs, paths=frame["path"].tolist(), cache_dir=descriptor_cache)
    predictions = predictions_frame(frame, model.tasks, outputs)
    return predictions, all_task_metrics(predictions)


def headline(metrics: dict[str, dict]) -> dict[str, float]:
    """The few numbers people quote: accuracy/macro-F1 per classification task, MAE/CS@5 for age."""
    flat = {}
    for task, values in metrics.items():
        for key in ("accuracy", "macro_f1", "roc_auc", "mae", "cs5"):
            if key in values:
                flat[f"{task}_{key}"] = round(values[key], 5)
    return flat


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_evaluation(out_dir: Path, predictions: pd.DataFrame, metrics: dict, extra: Optional[dict] = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = Run(out_dir)
    folder.write_predictions(predictions)
    write_confusion_matrices(metrics, out_dir)
    fairness = gender_rates_by_race(predictions)
    if fairness is not None:
        fairness.to_csv(out_dir / "gender_fpr_fnr_by_race.csv", index=False)
    report = {"metrics": metrics, "headline": headline(metrics), "selection_score": selection_score(metrics),
              "gender_fpr_fnr_by_race": fairness.to_dict(orient="records") if fairness is not None else None,
              **(extra or {})}
    folder.write_report(_json_safe(report))
    return report


def append_benchmark_row(csv_path: Path, row: dict) -> None:
    """One row per run; new columns (another task, another option) widen the table instead of
    breaking it."""
    row = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
    new = pd.DataFrame([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in row.items()}])
    if csv_path.exists():
        old = pd.read_csv(csv_path)
        new = pd.concat([old, new], ignore_index=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    new.to_csv(tmp, index=False)
    tmp.replace(csv_path)


def print_headline(title: str, metrics: dict) -> None:
    parts = [f"{k}={v:.4f}" for k, v in headline(metrics).items() if not k.endswith("roc_auc")]
    print(f"{title}: " + "  ".join(parts), flush=True)
