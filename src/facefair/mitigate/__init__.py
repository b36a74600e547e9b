"""Bias mitigation: training methods that plug into ``facefair train --method NAME`` and a
post-processing step for predictions.

==============  ==================================================  ========================
method          what it does                                        demographic labels
==============  ==================================================  ========================
``reweight``    loss weight per row ~ 1 / size of its group         training rows
``adversarial`` gradient-reversal adversary predicts the group      training rows
``fineface``    FineFACE cross-layer attention experts              none
==============  ==================================================  ========================

Group-balanced sampling (``--sampler balanced --sampler-by race gender``) and class-balanced
losses (``--class-weights``) are options of every method.  Group thresholds
(:mod:`facefair.mitigate.thresholds`) post-process a finished run's predictions.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from torch import nn

from facefair.models.multitask import ModelConfig
from facefair.tasks import TaskSpec


def method_options(config, defaults: Mapping[str, object], method: str) -> dict:
    """``--method-options`` merged over a method's defaults; an unknown key (a typo) is an error."""
    given = dict(config.train.method_options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown --method-options {unknown} for method {method!r}; "
                         f"known: {', '.join(f'{k} (default {v})' for k, v in defaults.items())}")
    return {**defaults, **given}


# The method modules import the helper above, so they come after it.
from facefair.mitigate import adversarial, fineface, reweight  # noqa: E402,F401  (register the methods)

#: architecture name in a checkpoint -> builder(model_config, tasks, checkpoint) of an untrained
#: model with the same shapes (``load_model`` then loads the weights).
ARCHITECTURES: dict[str, Callable[[ModelConfig, Sequence[TaskSpec], Mapping], nn.Module]] = {
    "adversarial": adversarial.from_checkpoint,
    "fineface": fineface.from_checkpoint,
}

#: method name -> (needs demographic labels, one line) for ``facefair mitigate methods``.
METHOD_SUMMARIES = {
    "standard": (False, "plain multi-task training (combine with --sampler balanced / --class-weights)"),
    "reweight": (True, "per-row loss weight 1/size of the row's --group-by group, mean 1"),
    "adversarial": (True, "gradient-reversal adversary predicts the --group-by group from the shared features"),
    "fineface": (False, "FineFACE: 3 cross-layer attention experts + a concat head, 5 optimiser steps a batch"),
}


def build_architecture(name: str, model_config: ModelConfig, tasks: Sequence[TaskSpec],
                       checkpoint: Mapping) -> nn.Module:
    """The model a mitigation method trained, rebuilt (without weights) from its checkpoint."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model architecture {name!r} in checkpoint; known: multitask, "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name](model_config, tasks, checkpoint)
