"""Training methods: how a model is built and how one batch is trained.

The standard method is plain multi-task training.  Bias-mitigation methods (``facefair.mitigate``)
subclass :class:`TrainingMethod` and register under a name, like timm's model registry: they may
swap the model (FineFACE experts), add a loss (an adversary), reweight rows, or take several
optimiser steps per batch — the loop, checkpoints, evaluation and reports stay the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from facefair.registry import Registry
from facefair.runtime import autocast_context
from facefair.models.multitask import ModelConfig, MultiTaskModel
from facefair.tasks import TaskSpec

if TYPE_CHECKING:
    from facefair.config import RunConfig
    from facefair.train.loop import Trainer

#: method name -> TrainingMethod class; the mitigation methods are imported when a run names one
METHODS: "Registry[Callable[[RunConfig], TrainingMethod]]" = Registry("training method", {
    "reweight": "facefair.mitigate.reweight",
    "adversarial": "facefair.mitigate.adversarial",
    "fineface": "facefair.mitigate.fineface",
    "group_dro": "facefair.mitigate.group_dro",
})


def register_method(name: str):
    def add(cls):
        cls.name = name
        return METHODS.register(name)(cls)
    return add


def method_options(config: "RunConfig", defaults: Mapping[str, object], method: str) -> dict:
    """``--method-options`` merged over a method's defaults; an unknown key (a typo) is an error."""
    given = dict(config.train.method_options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown --method-options {unknown} for method {method!r}; "
                         f"known: {', '.join(f'{k} (default {v})' for k, v in defaults.items())}")
    return {**defaults, **given}


class TrainingMethod:
    name = "standard"

    def __init__(self, config: "RunConfig"):
        self.config = config

    def build_model(self, model_config: ModelConfig, tasks: Sequence[TaskSpec]) -> nn.Module:
        return MultiTaskModel(model_config, tasks)

    def setup(self, trainer: "Trainer") -> None:
        """Called once the data, model, loss and optimiser exist (e.g. to precompute row weights)."""

    def sample_weight(self, trainer: "Trainer", positions) -> Optional[torch.Tensor]:
        """The method's own per-row weights (e.g. reweight's group weights); None: all rows weigh 1."""
        return None

    def row_weights(self, trainer: "Trainer", positions) -> Optional[torch.Tensor | dict[str, torch.Tensor]]:
        """What the loss weighs a batch's rows by: ``sample_weight`` times, per task, the label
        weights of ``--downweight``."""
        weight = self.sample_weight(trainer, positions)
        if trainer.label_weights is None:
            return weight
        index = torch.as_tensor(positions, device=trainer.device)
        return {task: w[index] if weight is None else w[index] * weight for task, w in trainer.label_weights.items()}

    def state_dict(self) -> dict:
        """State the method keeps between batches (e.g. Group DRO's group weights), saved in last.pt."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` on ``--resume`` (called after ``setup``)."""

    def report(self) -> dict:
        """What the run's report.json records of the method (empty: nothing)."""
        return {}

    def train_step(self, trainer: "Trainer", x: torch.Tensor, targets: dict[str, torch.Tensor],
                   positions) -> tuple[torch.Tensor, dict[str, float], bool]:
        """One batch: (loss, per-task losses, whether the optimiser step was taken)."""
        t = trainer.config.train
        with autocast_context(trainer.device, t.amp, t.bf16):
            outputs = trainer.forward(x)
        loss, parts = trainer.loss_fn(outputs, targets, self.row_weights(trainer, positions))
        return loss, parts, trainer.optimizer_step(loss)


register_method("standard")(TrainingMethod)


def create_method(config: "RunConfig") -> TrainingMethod:
    name = config.train.method
    return METHODS.get(name)(config)
