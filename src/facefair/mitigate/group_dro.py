"""Group DRO (``--method group_dro --group-by race gender --method-options task=gender``).

Online group distributionally robust optimisation (Sagawa et al., *Distributionally Robust Neural
Networks for Group Shifts*, ICLR 2020, their Algorithm 1): the model minimises a *weighted* mean of
the per-group losses of one task, ``sum_g q_g * L_g``, and the weights ``q`` (a distribution over
the joint ``group_by`` groups) follow the groups' losses by exponentiated gradient ascent after
every batch, ``q_g <- q_g * exp(step_size * (L_g + adjustment / sqrt(n_g)))``, renormalised. A group
that stays hard gains weight until its loss comes down: the objective approaches the worst
group's loss rather than the average row's. Reweighting (``reweight``) fixes the weights by
group size before training; Group DRO moves them by how badly each group is served.

Only ``task``'s loss is reweighted (gender fairness across race x gender must not distort the
race or age heads); the other tasks train as in the standard method. ``adjustment`` is the
paper's generalisation adjustment ``C / sqrt(n_g)`` (``n_g`` = the group's training rows), which
favours small groups whose training loss understates their test loss; 0 turns it off.

``q`` is method state: it is saved in ``last.pt`` so ``--resume`` continues the same weights,
the history records the largest weight and its group each epoch, and the report lists the final
weights. One process only (``q`` is updated from each batch's losses, which DDP would split).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from facefair.data.splits import group_keys
from facefair.runtime import autocast_context
from facefair.tasks import IGNORE_INDEX
from facefair.train.methods import TrainingMethod, method_options, register_method

log = logging.getLogger("facefair")

DEFAULTS = {"task": "gender", "step_size": 0.01, "adjustment": 0.0}


def batch_group_losses(per_row: torch.Tensor, groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and row count of every group in one batch (rows of group -1 are left out)."""
    keep = groups >= 0
    counts = torch.zeros(n_groups, device=per_row.device).index_add_(0, groups[keep], torch.ones_like(per_row[keep]))
    sums = torch.zeros(n_groups, device=per_row.device).index_add_(0, groups[keep], per_row[keep])
    return sums / counts.clamp_min(1.0), counts


def update_group_weights(q: torch.Tensor, losses: torch.Tensor, counts: torch.Tensor, step_size: float,
                         bonus: torch.Tensor) -> torch.Tensor:
    """One exponentiated-gradient step on the groups present in the batch (absent groups keep
    their weight relative to each other); in log space, so a long run cannot overflow."""
    present = counts > 0
    log_q = torch.log(q) + torch.where(present, step_size * (losses + bonus), torch.zeros_like(losses))
    return torch.softmax(log_q, dim=0)


def dro_row_weights(q: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Row weights whose weighted mean loss is ``sum_g q_g L_g / sum_(present g) q_g``: each
    grouped row gets ``q_g / n_g(batch)``; a row without a group gets the grouped rows' average."""
    grouped = groups >= 0
    weights = torch.zeros(len(groups), device=q.device)
    if grouped.any():
        weights[grouped] = q[groups[grouped]] / counts[groups[grouped]]
        weights[~grouped] = weights[grouped].mean()
    else:
        weights[:] = 1.0
    return weights


@register_method("group_dro")
class GroupDROMethod(TrainingMethod):
    """Standard multi-task training with ``task``'s loss weighted towards its worst groups."""

    def __init__(self, config):
        super().__init__(config)
        self.options = method_options(config, DEFAULTS, "group_dro")
        if not config.train.group_by:
            raise ValueError("--method group_dro needs --group-by (e.g. race gender)")
        self.step_size = float(self.options["step_size"])
        self.adjustment = float(self.options["adjustment"])
        if self.step_size < 0 or self.adjustment < 0:
            raise ValueError("group_dro: step_size and adjustment must be >= 0")
        self.task = str(self.options["task"])
        self.names: list[str] = []
        self.q: torch.Tensor | None = None

    def setup(self, trainer) -> None:
        kinds = {t.name: t.kind for t in trainer.tasks}
        if kinds.get(self.task) != "classification":
            known = [name for name, kind in kinds.items() if kind == "classification"]
            raise ValueError(f"group_dro: task={self.task!r} is not a classification task of this run "
                             f"(classification tasks: {', '.join(known)})")
        frame = trainer.data.splits["train"].frame
        by = list(self.config.train.group_by)
        missing = [c for c in by if c not in frame]
        if missing:
            raise ValueError(f"group_dro: cannot group by {missing}: not in the data")
        labelled = frame[by].notna().all(axis=1).to_numpy()
        keys = group_keys(frame[labelled], by)
        self.names = sorted(keys.unique())
        index = {name: i for i, name in enumerate(self.names)}
        groups = np.full(len(frame), -1, dtype=np.int64)
        groups[labelled] = keys.map(index).to_numpy()
        sizes = np.bincount(groups[labelled], minlength=len(self.names)).astype(np.float32)
        self.groups = torch.as_tensor(groups, device=trainer.device)
        self.bonus = torch.as_tensor(self.adjustment / np.sqrt(np.maximum(sizes, 1.0)), dtype=torch.float32,
                                     device=trainer.device)
        if self.q is None:  # a resumed run has loaded its saved weights already
            self.q = torch.full((len(self.names),), 1.0 / len(self.names), device=trainer.device)
        log.info("group_dro on %s's loss over %d %s groups (smallest %s: %d rows); step_size %g, adjustment %g; "
                 "%d rows without a group weigh as an average grouped row", self.task, len(self.names), "x".join(by),
                 self.names[int(sizes.argmin())], int(sizes.min()), self.step_size, self.adjustment,
                 int((~labelled).sum()))

    def train_step(self, trainer, x, targets, positions):
        t = trainer.config.train
        with autocast_context(trainer.device, t.amp, t.bf16):
            outputs = trainer.forward(x)
        target = targets[self.task]
        groups = self.groups[torch.as_tensor(positions, device=self.groups.device)]
        groups = torch.where(target != IGNORE_INDEX, groups, torch.full_like(groups, -1))
        with torch.no_grad():
            labelled = target != IGNORE_INDEX
            per_row = torch.zeros(len(target), device=target.device)
            if labelled.any():
                # the loss the model is trained on (label smoothing, class weights included)
                per_row[labelled] = trainer.loss_fn.cross_entropy[self.task](outputs[self.task][labelled].float(),
                                                                             target[labelled])
            losses, counts = batch_group_losses(per_row, groups, len(self.names))
            if torch.isfinite(losses).all():  # a NaN batch must not poison q (the step is skipped anyway)
                self.q = update_group_weights(self.q, losses, counts, self.step_size, self.bonus)
            dro = dro_row_weights(self.q, groups, counts)
        base = self.row_weights(trainer, positions)
        weights = dict(base) if isinstance(base, dict) else {task.name: base for task in trainer.tasks}
        weights[self.task] = dro if weights.get(self.task) is None else weights[self.task] * dro
        loss, parts = trainer.loss_fn(outputs, targets, weights)
        parts = {**parts, "dro_max_weight": float(self.q.max()) * len(self.names)}  # 1 = uniform
        return loss, parts, trainer.optimizer_step(loss)

    def weights_by_group(self) -> dict[str, float]:
        return {name: float(w) for name, w in zip(self.names, self.q.tolist())} if self.q is not None else {}

    def state_dict(self) -> dict:
        return {"names": list(self.names), "q": self.q.tolist() if self.q is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("q") is None:
            return
        if self.names and list(state["names"]) != self.names:
            raise ValueError(f"group_dro: the saved run's groups {state['names']} differ from this data's {self.names}")
        self.names = list(state["names"])
        device = self.q.device if self.q is not None else "cpu"
        self.q = torch.as_tensor(state["q"], dtype=torch.float32, device=device)
        if not math.isclose(float(self.q.sum()), 1.0, rel_tol=1e-4):
            raise ValueError("group_dro: the saved group weights do not sum to 1")

    def report(self) -> dict:
        return {"task": self.task, "step_size": self.step_size, "adjustment": self.adjustment,
                "final_group_weights": self.weights_by_group()}
