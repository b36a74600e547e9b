"""Settings of one served model (no globals: the app factory holds one of these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from facefair.inference.settings import DEFAULTS, InferenceSettings

#: ``none``: every upload is one already-cropped face; the rest are :mod:`facefair.align` backends.
DETECT_CHOICES = ("none", "auto", "dlib-hog", "dlib", "mtcnn")


@dataclass
class ServeConfig:
    checkpoint: str
    detect: str = "none"
    # How the model runs and photos are cut: facefair.inference's defaults, the same as
    # `facefair predict` and the Python API, so one photo gets one answer whichever way it comes.
    device: str = DEFAULTS.device
    tta: bool = DEFAULTS.tta
    bf16: Optional[bool] = DEFAULTS.bf16
    max_side: int = DEFAULTS.max_side        # photos shrunk to this longer side before faces are found and cut
    chip_size: int = DEFAULTS.chip_size
    padding: Optional[float] = DEFAULTS.padding  # None: the model's measured training-chip padding, else 0.25
    min_face: int = DEFAULTS.min_face
    # Limits.  Bytes bound the upload itself; sides/pixels bound the decoded size, which a small
    # PNG can inflate enormously (a "decompression bomb"), so both are checked before decoding.
    max_bytes: int = 15 * 2**20
    max_upload_side: int = 8000
    max_pixels: int = 50_000_000
    max_faces: int = 32            # bounds model work per request on crowded photos
    # Uploads decoded at once; the rest wait.  A decode may hold max_pixels x 4 bytes, so this (not
    # the number of clients) bounds the memory that parallel uploads can take.
    max_decodes: int = 2
    demo_image: Optional[str] = None  # served at /demo.jpg; the page loads it with ?demo=1
    trust_checkpoint: bool = False    # unpickle an old .pt beyond tensors (--trust-checkpoint)

    def __post_init__(self) -> None:
        if self.detect not in DETECT_CHOICES:
            raise ValueError(f"unknown detect {self.detect!r}: {', '.join(DETECT_CHOICES)}")
        for name in ("max_bytes", "max_upload_side", "max_pixels", "max_faces", "max_decodes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.settings()  # max_side, chip_size, padding ... checked where every command checks them

    def settings(self) -> InferenceSettings:
        """The inference settings the served model runs with."""
        return InferenceSettings.from_object(self)

    def limits(self) -> dict:
        return {"max_bytes": self.max_bytes, "max_upload_side": self.max_upload_side, "max_pixels": self.max_pixels,
                "max_faces": self.max_faces}
