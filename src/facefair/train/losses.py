"""Weighted sum of per-task losses, each computed only over the rows that task labels."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from facefair.tasks import IGNORE_INDEX, TaskSpec


def label_weights(frame, tasks: Sequence[TaskSpec], device=None) -> Optional[dict[str, torch.Tensor]]:
    """Per-task loss weights of every train row from the ``label_weight[:TASK]`` columns that
    ``--downweight`` writes (whole-image and per-task weights multiply); None when there are none."""
    from facefair.data.exclusions import LABEL_WEIGHT, label_weight_column
    if not any(str(c).startswith(LABEL_WEIGHT) for c in frame.columns):
        return None
    image = frame[LABEL_WEIGHT].to_numpy(dtype=np.float32) if LABEL_WEIGHT in frame else np.ones(len(frame), np.float32)
    weights = {}
    for task in tasks:
        column = label_weight_column(task.name)
        per_task = frame[column].to_numpy(dtype=np.float32) if column in frame else 1.0
        weights[task.name] = torch.as_tensor(image * per_task, dtype=torch.float32, device=device)
    return weights


def inverse_frequency_weights(encoded: np.ndarray, num_classes: int) -> torch.Tensor:
    """Class weights n / (k * count) over the k classes present, scikit-learn's 'balanced' rule (the
    average sample weight stays 1); classes absent from training get 0."""
    labelled = encoded[encoded != IGNORE_INDEX]
    counts = np.bincount(labelled, minlength=num_classes).astype(float)
    present = max(1, int((counts > 0).sum()))
    weights = np.where(counts > 0, len(labelled) / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class MultiTaskLoss(nn.Module):
    """``global_sum``: under DDP, a function summing a tensor over every rank.  Each task's loss is
    then this rank's sum over its labelled rows divided by the global labelled count (or weight),
    times the world size: DDP averages gradients over ranks, so the step is that of the mean over
    every labelled row of the global batch, exactly as in one process, however the labels fall."""

    def __init__(self, tasks: Sequence[TaskSpec], heads: nn.ModuleDict, *, task_weights: Optional[dict] = None,
                 class_weights: Optional[dict[str, torch.Tensor]] = None, label_smoothing: float = 0.0,
                 global_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, world_size: int = 1):
        super().__init__()
        self.tasks, self.heads = list(tasks), heads
        self.global_sum, self.world_size = global_sum, world_size
        self.task_weights = {t.name: float((task_weights or {}).get(t.name, 1.0)) for t in tasks}
        unknown = set(task_weights or {}) - set(self.task_weights)
        if unknown:
            raise ValueError(f"task weights for unknown tasks {sorted(unknown)}")
        self.cross_entropy = nn.ModuleDict({
            t.name: nn.CrossEntropyLoss(weight=(class_weights or {}).get(t.name), ignore_index=IGNORE_INDEX,
                                        label_smoothing=label_smoothing, reduction="none")
            for t in tasks if t.kind == "classification"})

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                sample_weight: Optional[torch.Tensor | dict[str, torch.Tensor]] = None):
        """Total loss and the per-task values; a task no row of the batch labels adds nothing.
        ``sample_weight`` (per row, or per task and row) reweights rows, e.g. inversely to their
        demographic group's size, or a suspicious label down."""
        total = outputs[self.tasks[0].name].new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        sums, counts = {}, {}
        for task in self.tasks:
            output, target = outputs[task.name], targets[task.name]
            mask = target != IGNORE_INDEX if task.kind == "classification" else ~torch.isnan(target)
            if not mask.any():
                continue
            row_weight = sample_weight.get(task.name) if isinstance(sample_weight, dict) else sample_weight
            weight = None if row_weight is None else row_weight[mask]
            if task.kind == "classification":
                per_row = self.cross_entropy[task.name](output[mask].float(), target[mask])
                sums[task.name], counts[task.name] = self._terms(per_row, target[mask], task.name, weight)
            else:
                mean = self.heads[task.name].loss(output[mask].float(), target[mask], weight)
                count = mask.sum().float() if weight is None else weight.float().sum()
                sums[task.name], counts[task.name] = mean * count, count  # the head gives a mean: back to a sum
        if self.global_sum is None:
            for name, value in sums.items():
                loss = value / counts[name].clamp_min(1e-12)
                total = total + self.task_weights[name] * loss
                parts[name] = float(loss.detach())
            return total, parts
        # One all-reduce of every task's count; a task this rank does not label still joins the
        # graph with a zero, since DDP expects a gradient for every head from every rank.
        local = torch.stack([counts[t.name].detach().float() if t.name in counts else total.new_zeros(())
                             for t in self.tasks])
        global_counts = self.global_sum(local)
        for task, count in zip(self.tasks, global_counts):
            if float(count) <= 0:
                total = total + 0.0 * outputs[task.name].float().sum()
                continue
            value = sums.get(task.name)
            if value is None:
                value = 0.0 * outputs[task.name].float().sum()
            loss = value * self.world_size / count
            total = total + self.task_weights[task.name] * loss
            parts[task.name] = float(loss.detach())
        return total, parts

    def _terms(self, per_row: torch.Tensor, target: torch.Tensor, task: str, sample_weight):
        """Numerator and denominator of the mean CrossEntropyLoss(reduction='mean') defines: the
        weighted sum of losses and the summed weights."""
        weight = self.cross_entropy[task].weight
        denominator = weight[target] if weight is not None else torch.ones_like(per_row)
        if sample_weight is not None:
            per_row = per_row * sample_weight
            denominator = denominator * sample_weight
        return per_row.sum(), denominator.sum()
