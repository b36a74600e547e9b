"""One shared backbone, one head per task."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from facefair.models.backbones import create_backbone
from facefair.models.config import ModelConfig
from facefair.models.heads import build_heads
from facefair.models.registry import build_architecture, register_architecture
from facefair.tasks import TaskSpec, check_task


class MultiTaskModel(nn.Module):
    def __init__(self, config: ModelConfig, tasks: Sequence[TaskSpec], *, load_weights: bool = True):
        super().__init__()
        self.config, self.tasks = config, list(tasks)
        self.backbone = create_backbone(config.backbone, pretrained=config.pretrained and load_weights,
                                        weights=config.weights if load_weights else None,
                                        image_size=config.resolved_size())
        self.heads = build_heads(self.backbone.num_features, self.tasks, config.dropout, config.age_head)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Probabilities for classification tasks, years for age."""
        return {name: self.heads[name].predict(out.float()) for name, out in outputs.items()}

    def describe(self) -> dict:
        return {"architecture": "multitask", "model": asdict(self.config), "tasks": [t.to_dict() for t in self.tasks]}


@register_architecture("multitask")
def from_checkpoint(config: ModelConfig, tasks: Sequence[TaskSpec], checkpoint) -> MultiTaskModel:
    return MultiTaskModel(config, tasks, load_weights=False)


def load_model(checkpoint_path: str | Path, map_location: str | torch.device = "cpu", *,
               trust_checkpoint: bool = False) -> MultiTaskModel:
    """Rebuild a trained model from its files alone (no hub or weight file needed): a run or export
    folder (``config.json`` + ``model.safetensors``, no pickle), or a ``.pt`` checkpoint, which is
    unpickled beyond tensors only with ``trust_checkpoint`` (``--trust-checkpoint``)."""
    from facefair.models.serialization import CONFIG_NAME, CheckpointError, read_checkpoint, resolve
    checkpoint = read_checkpoint(checkpoint_path, map_location, trust=trust_checkpoint)
    resolved = resolve(checkpoint_path)
    where = resolved / CONFIG_NAME if resolved.is_dir() else resolved  # the file that describes the model
    try:
        config = ModelConfig(**checkpoint["model"])
        tasks = [TaskSpec.from_dict(t) for t in checkpoint["tasks"]]
    except (TypeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{where}: model description does not fit this facefair ({error})") from None
    try:
        config.check()
        for task in tasks:
            check_task(task)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}; was the file edited by hand?") from None
    model = build_architecture(checkpoint.get("architecture", "multitask"), config, tasks, checkpoint)
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError as error:
        raise CheckpointError(f"{checkpoint_path}: weights do not fit the model it describes "
                              f"({str(error).splitlines()[0]})") from None
    # How the training chips framed their faces (facefair.align.framing), None for older files.
    model.framing = checkpoint.get("framing")
    model.face_heads = None
    if resolved.is_dir():
        from facefair.run import Run
        heads_path = Run(resolved).face_heads_path
        if heads_path.is_file():
            from facefair.models.face_heads import FaceHeads, FaceHeadsError
            try:
                model.face_heads = FaceHeads.load(heads_path, tasks)
            except FaceHeadsError as error:
                raise CheckpointError(str(error)) from None
    return model.eval()
