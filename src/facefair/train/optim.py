"""AdamW's parameter groups and the warm-up + cosine learning-rate schedule of every run."""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, lr: float, backbone_scale: float, weight_decay: float) -> list[dict]:
    """Every trainable parameter: the backbone's at ``lr * backbone_scale``, the rest (heads, and
    whatever a mitigation method adds) at ``lr``; no decay on biases and norm weights (1-d)."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[bool, bool], list] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in backbone_ids, param.ndim > 1), []).append(param)
    return [{"params": params, "lr": lr * (backbone_scale if in_backbone else 1.0),
             "weight_decay": weight_decay if decays else 0.0}
            for (in_backbone, decays), params in sorted(groups.items())]


def warmup_cosine(warmup_steps: int, total_steps: int, final: float = 0.0):
    """The lr factor at each step: linear warm-up, a cosine down to ``final`` at ``total_steps``,
    then ``final`` held (the constant phase of stochastic weight averaging).

    >>> f = warmup_cosine(2, 6, final=0.2)
    >>> [round(f(step), 2) for step in range(8)]
    [0.5, 1.0, 1.0, 0.88, 0.6, 0.32, 0.2, 0.2]
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor
