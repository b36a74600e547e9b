"""Weighted sum of per-task losses, each computed only over the rows that task labels."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from facefair.tasks import IGNORE_INDEX, TaskSpec


def inverse_frequency_weights(encoded: np.ndarray, num_classes: int) -> torch.Tensor:
    """Class weights n / (k * count) over the k classes present, scikit-learn's 'balanced' rule (the
    average sample weight stays 1); classes absent from training get 0."""
    labelled = encoded[encoded != IGNORE_INDEX]
    counts = np.bincount(labelled, minlength=num_classes).astype(float)
    present = max(1, int((counts > 0).sum()))
    weights = np.where(counts > 0, len(labelled) / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class MultiTaskLoss(nn.Module):
    def __init__(self, tasks: Sequence[TaskSpec], heads: nn.ModuleDict, *, task_weights: Optional[dict] = None,
                 class_weights: Optional[dict[str, torch.Tensor]] = None, label_smoothing: float = 0.0):
        super().__init__()
        self.tasks, self.heads = list(tasks), heads
        self.task_weights = {t.name: float((task_weights or {}).get(t.name, 1.0)) for t in tasks}
        unknown = set(task_weights or {}) - set(self.task_weights)
        if unknown:
            raise ValueError(f"task weights for unknown tasks {sorted(unknown)}")
        self.cross_entropy = nn.ModuleDict({
            t.name: nn.CrossEntropyLoss(weight=(class_weights or {}).get(t.name), ignore_index=IGNORE_INDEX,
                                        label_smoothing=label_smoothing, reduction="none")
            for t in tasks if t.kind == "classification"})

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                sample_weight: Optional[torch.Tensor] = None):
        """Total loss and the per-task values; a task no row of the batch labels adds nothing.
        ``sample_weight`` (per row) reweights rows, e.g. inversely to their demographic group's size."""
        total = outputs[self.tasks[0].name].new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        for task in self.tasks:
            output, target = outputs[task.name], targets[task.name]
            if task.kind == "classification":
                mask = target != IGNORE_INDEX
                if not mask.any():
                    continue
                per_row = self.cross_entropy[task.name](output[mask].float(), target[mask])
                loss = self._reduce(per_row, target[mask], task.name, sample_weight, mask)
            else:
                mask = ~torch.isnan(target)
                if not mask.any():
                    continue
                loss = self.heads[task.name].loss(output[mask].float(), target[mask],
                                                  None if sample_weight is None else sample_weight[mask])
            total = total + self.task_weights[task.name] * loss
            parts[task.name] = float(loss.detach())
        return total, parts

    def _reduce(self, per_row: torch.Tensor, target: torch.Tensor, task: str, sample_weight, mask) -> torch.Tensor:
        """Mean as CrossEntropyLoss(reduction='mean') defines it: divided by the summed weights."""
        weight = self.cross_entropy[task].weight
        denominator = weight[target] if weight is not None else torch.ones_like(per_row)
        if sample_weight is not None:
            per_row = per_row * sample_weight[mask]
            denominator = denominator * sample_weight[mask]
        return per_row.sum() / denominator.sum().clamp_min(1e-12)
