"""Training augmentation settings, as plain data (no torch here: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = field(default=(0.85, 1.05), metadata={"help": "zoom range LOW HIGH (<1 zooms in)"})
    shift: float = field(default=0.06, metadata={"help": "max translation, fraction of the image"})
    rotate_degrees: float = field(default=10.0, metadata={"help": "max rotation either way, degrees"})
    flip: bool = field(default=True, metadata={"help": "random horizontal mirror"})
    brightness: float = field(default=0.2, metadata={"help": "brightness jitter, +- this fraction"})
    contrast: float = field(default=0.2, metadata={"help": "contrast jitter, +- this fraction"})
