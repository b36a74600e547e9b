"""What a model is made of, as plain data (no torch here: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ModelConfig:
    backbone: str = "mobilenetv2"
    image_size: int = 0             # 0: the backbone's default
    pretrained: bool = False        # timm hub weights (needs internet)
    weights: Optional[str] = None   # local backbone checkpoint
    age_head: str = "regression"    # or "coral"
    dropout: float = 0.2
    tasks: list[str] = field(default_factory=lambda: ["gender", "race", "age_group", "age"])

    def resolved_size(self) -> int:
        from facefair.models.backbones import resolve_backbone  # timm: only when a size is needed

        return self.image_size or resolve_backbone(self.backbone).default_size
