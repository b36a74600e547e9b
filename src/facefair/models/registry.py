"""Model architectures by name (:class:`facefair.registry.Registry`, timm's pattern).

A checkpoint names its architecture (``"multitask"``, ``"fineface"``, ...); ``load_model`` asks
:data:`ARCHITECTURES` for the builder that makes the untrained model with the checkpoint's
shapes.  Architectures defined outside ``facefair.models`` (the mitigation methods') are listed
by module path and imported only when a checkpoint asks for one of them: ``models/`` never
imports the layers above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from facefair.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from facefair.models.config import ModelConfig
    from facefair.tasks import TaskSpec

#: architecture name -> builder(model_config, tasks, checkpoint) of an untrained model
ARCHITECTURES: "Registry[Callable[[ModelConfig, Sequence[TaskSpec], Mapping], nn.Module]]" = Registry(
    "model architecture in checkpoint", {
        "multitask": "facefair.models.multitask",
        "adversarial": "facefair.mitigate.adversarial",
        "fineface": "facefair.mitigate.fineface",
    })

#: ``@register_architecture("fineface")`` over ``from_checkpoint(config, tasks, checkpoint)``
register_architecture = ARCHITECTURES.register


def build_architecture(name: str, model_config: "ModelConfig", tasks: Sequence["TaskSpec"],
                       checkpoint: Mapping) -> "nn.Module":
    """The model ``checkpoint`` was trained with, rebuilt without weights (``load_model`` loads them)."""
    return ARCHITECTURES.get(name)(model_config, tasks, checkpoint)
