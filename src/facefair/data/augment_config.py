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
    # Capture and quality changes (0: off): what photos outside the training set's framing and
    # quality bring, and what `facefair robustness` measures.
    saturation: float = field(default=0.0, metadata={"help": "saturation jitter, +- this fraction"})
    grayscale: float = field(default=0.0, metadata={"help": "probability of a grayscale image"})
    # Colour of the light and the camera's rendering: UTKFace's groups differ in where their
    # photos came from, so a model can read a colour cast or tone curve as race (docs/transfer.md).
    white_balance: float = field(default=0.0, metadata={"help": "colour cast: each channel's gain +- this fraction"})
    gamma: float = field(default=0.0, metadata={"help": "tone curve: gamma drawn log-uniformly in "
                                                        "[1/(1+G), 1+G]"})
    hue: float = field(default=0.0, metadata={"help": "hue shift, +- this fraction of the colour wheel (<= 0.5)"})
    # Quality in the other direction than blur: studio photos are sharper than web photos.
    sharpen: float = field(default=0.0, metadata={"help": "probability of an unsharp mask"})
    sharpen_amount: tuple[float, float] = field(default=(0.5, 2.0),
                                                metadata={"help": "unsharp-mask strength range LOW HIGH"})
    blur: float = field(default=0.0, metadata={"help": "probability of a Gaussian blur"})
    blur_sigma: tuple[float, float] = field(default=(0.4, 2.5),
                                            metadata={"help": "blur sigma range LOW HIGH, in percent of the image side"})
    low_resolution: float = field(default=0.0, metadata={"help": "probability of a downscale-upscale"})
    low_resolution_scale: tuple[float, float] = field(default=(0.25, 0.6),
                                                      metadata={"help": "side kept by the downscale, LOW HIGH"})
    jpeg: float = field(default=0.0, metadata={"help": "probability of JPEG re-compression"})
    jpeg_quality: tuple[int, int] = field(default=(15, 75), metadata={"help": "JPEG quality range LOW HIGH"})
    # Photos framed with more margin than the training chips (FairFace's padding-1.25 release: the
    # face under half as wide) make a model trained on tight chips call everyone male.
    zoom_out: float = field(default=0.0, metadata={"help": "probability of a wide frame: the face shrunk into a "
                                                           "larger view (zoom from --augment-zoom-out-scale)"})
    zoom_out_scale: tuple[float, float] = field(default=(1.2, 2.4),
                                                metadata={"help": "zoom of the wide frames, LOW HIGH (>= 1; 2.33 "
                                                                  "turns a padding-0.25 chip into padding 1.25)"})

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        for name in ("grayscale", "blur", "low_resolution", "jpeg", "zoom_out", "sharpen"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("white_balance", "gamma"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"augment.{name} needs 0 <= value < 1, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue is a share of the colour wheel in [0, 0.5], got {self.hue}")
        low, high = self.sharpen_amount
        if not 0 <= low <= high:
            raise ValueError(f"augment.sharpen_amount needs 0 <= LOW <= HIGH, got {self.sharpen_amount}")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"augment.jpeg_quality needs 1 <= LOW <= HIGH <= 100, got {self.jpeg_quality}")
        low, high = self.low_resolution_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"augment.low_resolution_scale needs 0 < LOW <= HIGH <= 1, got {self.low_resolution_scale}")
        low, high = self.zoom_out_scale
        if not 1 <= low <= high:
            raise ValueError(f"augment.zoom_out_scale needs 1 <= LOW <= HIGH, got {self.zoom_out_scale}")
