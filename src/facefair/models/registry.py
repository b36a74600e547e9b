"""Model architectures by name, the way timm's ``register_model`` works.

A checkpoint names its architecture (``"multitask"``, ``"fineface"``, ...); ``load_model`` asks
this registry for a builder that makes the untrained model with the checkpoint's shapes.  A module
that defines an architecture registers it with :func:`register_architecture`.  Architectures
defined outside ``facefair.models`` (the mitigation methods') are listed in :data:`PROVIDERS` by
module path, and imported only when a checkpoint asks for one of them: ``models/`` never imports
the layers above it, and the registry is filled whatever the import order was.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from torch import nn

    from facefair.models.multitask import ModelConfig
    from facefair.tasks import TaskSpec

    Builder = Callable[[ModelConfig, Sequence[TaskSpec], Mapping], nn.Module]

#: architecture name -> builder(model_config, tasks, checkpoint) of an untrained model
ARCHITECTURES: dict[str, "Builder"] = {}

#: architecture name -> the module that registers it (imported on first use, like an entry point)
PROVIDERS = {
    "multitask": "facefair.models.multitask",
    "adversarial": "facefair.mitigate.adversarial",
    "fineface": "facefair.mitigate.fineface",
}


def register_architecture(name: str):
    """Decorator: ``@register_architecture("fineface")`` over ``from_checkpoint(config, tasks, checkpoint)``."""
    def add(builder):
        ARCHITECTURES[name] = builder
        return builder
    return add


def architecture_builder(name: str) -> "Builder":
    if name not in ARCHITECTURES and name in PROVIDERS:
        importlib.import_module(PROVIDERS[name])
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model architecture {name!r} in checkpoint; known: "
                         f"{', '.join(sorted(set(PROVIDERS) | set(ARCHITECTURES)))}")
    return ARCHITECTURES[name]


def build_architecture(name: str, model_config: "ModelConfig", tasks: Sequence["TaskSpec"],
                       checkpoint: Mapping) -> "nn.Module":
    """The model ``checkpoint`` was trained with, rebuilt without weights (``load_model`` loads them)."""
    return architecture_builder(name)(model_config, tasks, checkpoint)
