"""What a model is made of, as plain data (no torch here: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

#: Input sizes a model may have (pixels a side).  Past the top the decoded batches alone outgrow any
#: machine's memory (``image_size: 100000`` was a kill by the out-of-memory killer, not a message);
#: the largest timm backbones use 518.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 2048
AGE_HEADS = ("regression", "coral")


@dataclass
class ModelConfig:
    backbone: str = "mobilenetv2"
    image_size: int = 0             # 0: the backbone's default
    pretrained: bool = False        # timm hub weights (needs internet)
    weights: Optional[str] = None   # local backbone checkpoint
    age_head: str = "regression"    # or "coral"
    dropout: float = 0.2
    tasks: list[str] = field(default_factory=lambda: ["gender", "race", "age_group", "age"])

    def check(self) -> None:
        """Range checks (messages name the ``model.KEY``; the caller adds the file): a config.yaml or a
        model's config.json with an impossible value stops here, before anything is built."""
        def wrong(key: str, expected: str) -> ValueError:
            return ValueError(f"model.{key}: expected {expected}, got {getattr(self, key)!r}")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise wrong("backbone", "a backbone name")
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or (size != 0 and not
                                                                   MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE):
            raise wrong("image_size", f"0 (the backbone's default) or a size from {MIN_IMAGE_SIZE} to "
                                      f"{MAX_IMAGE_SIZE} pixels")
        if self.age_head not in AGE_HEADS:
            raise wrong("age_head", " or ".join(AGE_HEADS))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise wrong("dropout", "a probability in [0, 1)")
        if not isinstance(self.pretrained, bool):
            raise wrong("pretrained", "true or false")
        if not isinstance(self.tasks, (list, tuple)) or not self.tasks or not all(isinstance(t, str) for t in self.tasks):
            raise wrong("tasks", "a list of task names")

    def resolved_size(self) -> int:
        from facefair.models.backbones import resolve_backbone  # timm: only when a size is needed

        return self.image_size or resolve_backbone(self.backbone).default_size
