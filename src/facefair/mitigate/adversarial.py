"""Adversarial debiasing (``--method adversarial --group-by race --method-options adversary_weight=0.3``).

An MLP adversary predicts each row's joint ``group_by`` group (e.g. race) from the shared pooled
features, through a gradient-reversal layer (Ganin & Lempitsky 2015): the adversary learns to
recognise the group, while the backbone receives the *negated* gradient, scaled by lambda, and
so learns features from which the group is hard to tell.  lambda ramps from 0 to
``adversary_weight`` over ``adversary_warmup`` epochs (DANN's 2/(1+exp(-10p))-1 curve), so the
task heads first learn something to protect.

The adversary is part of the model (architecture ``adversarial``) so checkpoints and ``--resume``
hold it; inference (``forward``/``predict``) ignores it.  Its output classes are the product of
the attributes' vocabularies (known before the data is seen, so the model can be built first).
Putting an attribute the model also predicts into ``group_by`` (gender for a gender head) makes
the adversary fight that head; for gender fairness across races use ``--group-by race``.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefair import labels as L
from facefair.runtime import autocast_context
from facefair.models.registry import register_architecture
from facefair.models.multitask import ModelConfig, MultiTaskModel
from facefair.tasks import IGNORE_INDEX, TaskSpec
from facefair.train.methods import TrainingMethod, method_options, register_method

log = logging.getLogger("facefair")

DEFAULTS = {"adversary_weight": 0.3, "adversary_warmup": 1.0, "adversary_hidden": 256}


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-scale``."""
    return _GradientReversal.apply(x, float(scale))


def attribute_values(attribute: str, tasks: Sequence[TaskSpec], race_scheme: Optional[str] = None) -> tuple[str, ...]:
    """The values an attribute can take: a trained task's classes, else the label vocabulary
    (race: the configured scheme, or every scheme's classes when the data decides)."""
    for task in tasks:
        if task.column == attribute and task.kind == "classification":
            return tuple(task.classes)
    if attribute == "gender":
        return L.GENDERS
    if attribute == "age_group":
        return L.AGE_GROUPS
    if attribute == "race":
        if race_scheme:
            return L.RACE_SCHEMES[race_scheme]
        return tuple(dict.fromkeys(c for scheme in L.RACE_SCHEMES.values() for c in scheme))
    raise ValueError(f"the adversary can predict race, gender or age_group groups, not {attribute!r}")


def joint_groups(group_by: Sequence[str], tasks: Sequence[TaskSpec], race_scheme: Optional[str] = None) -> list[str]:
    """Every joint group name, 'White|Male' style (the same spelling as ``group_keys``)."""
    vocabularies = [attribute_values(a, tasks, race_scheme) for a in group_by]
    return ["|".join(combo) for combo in itertools.product(*vocabularies)]


class AdversarialModel(MultiTaskModel):
    """A :class:`MultiTaskModel` plus an adversary on its pooled features (ignored at inference)."""

    def __init__(self, config: ModelConfig, tasks: Sequence[TaskSpec], *, group_by: Sequence[str],
                 groups: Sequence[str], hidden: int = 256, load_weights: bool = True):
        super().__init__(config, tasks, load_weights=load_weights)
        self.group_by, self.groups, self.hidden = list(group_by), list(groups), int(hidden)
        width = self.backbone.num_features
        self.adversary = nn.Sequential(nn.Linear(width, self.hidden), nn.ReLU(inplace=True),
                                       nn.Linear(self.hidden, len(self.groups)))

    def forward_with_adversary(self, images: torch.Tensor, reversal: float):
        """(task outputs, adversary logits); the adversary sees the features through gradient reversal."""
        features = self.forward_features(images)
        outputs = {name: head(features) for name, head in self.heads.items()}
        return outputs, self.adversary(grad_reverse(features, reversal))

    def describe(self) -> dict:
        return {**super().describe(), "architecture": "adversarial",
                "adversary": {"group_by": self.group_by, "groups": self.groups, "hidden": self.hidden}}


@register_architecture("adversarial")
def from_checkpoint(config: ModelConfig, tasks: Sequence[TaskSpec], checkpoint: Mapping) -> AdversarialModel:
    spec = checkpoint["adversary"]
    return AdversarialModel(config, tasks, group_by=spec["group_by"], groups=spec["groups"], hidden=spec["hidden"],
                            load_weights=False)


def dann_ramp(progress: float) -> float:
    """0 at the start, ~1 once ``progress`` reaches 1 (Ganin & Lempitsky's schedule)."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


@register_method("adversarial")
class AdversarialMethod(TrainingMethod):
    def __init__(self, config):
        super().__init__(config)
        self.options = method_options(config, DEFAULTS, "adversarial")
        if not config.train.group_by:
            raise ValueError("--method adversarial needs --group-by (e.g. race)")
        self.group_targets: Optional[torch.Tensor] = None
        self.warmup_steps = 0

    def build_model(self, model_config: ModelConfig, tasks: Sequence[TaskSpec]) -> AdversarialModel:
        group_by = list(self.config.train.group_by)
        overlap = [t.name for t in tasks if t.column in group_by]
        if overlap:
            log.warning("adversarial: --group-by %s includes attributes the model predicts (%s); the adversary "
                        "will remove what those heads need", group_by, overlap)
        groups = joint_groups(group_by, tasks, self.config.data.race_scheme)
        return AdversarialModel(model_config, tasks, group_by=group_by, groups=groups,
                                hidden=int(self.options["adversary_hidden"]))

    def setup(self, trainer) -> None:
        from facefair.data.splits import group_keys
        frame = trainer.data.splits["train"].frame
        index = {g: i for i, g in enumerate(trainer.model.groups)}
        keys = group_keys(frame, trainer.model.group_by)
        codes = np.array([index.get(k, IGNORE_INDEX) for k in keys], dtype=np.int64)
        unknown = int((codes == IGNORE_INDEX).sum())
        if unknown:
            log.warning("adversarial: %d training rows have no known %s group; the adversary ignores them",
                        unknown, "x".join(trainer.model.group_by))
        if unknown == len(codes):
            raise ValueError(f"no training row has a {'x'.join(trainer.model.group_by)} group the adversary knows")
        self.group_targets = torch.from_numpy(codes).to(trainer.device)
        self.warmup_steps = max(0, int(round(self.options["adversary_warmup"] * trainer.steps_per_epoch)))

    def reversal(self, trainer) -> float:
        """lambda at the current step (the scheduler's step count, so a resumed run continues the ramp)."""
        progress = trainer.scheduler.last_epoch / self.warmup_steps if self.warmup_steps else 1.0
        return float(self.options["adversary_weight"]) * dann_ramp(progress)

    def train_step(self, trainer, x, targets, positions):
        t = trainer.config.train
        lam = self.reversal(trainer)
        with autocast_context(trainer.device, t.amp, t.bf16):
            outputs, adversary_logits = trainer.model.forward_with_adversary(x, lam)
        loss, parts = trainer.loss_fn(outputs, targets, self.row_weights(trainer, positions))
        groups = self.group_targets[torch.as_tensor(positions, device=self.group_targets.device)]
        known = groups != IGNORE_INDEX
        if known.any():
            adversary_loss = F.cross_entropy(adversary_logits[known].float(), groups[known])
            accuracy = (adversary_logits[known].argmax(1) == groups[known]).float().mean()
            loss = loss + adversary_loss
            parts = {**parts, "adversary": float(adversary_loss.detach()),
                     "adversary_acc": float(accuracy), "adversary_lambda": lam}
        return loss, parts, trainer.optimizer_step(loss)
