"""Settings of one served model (no globals: the app factory holds one of these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from facefair.flags import TTA_DEFAULT

#: ``none``: every upload is one already-cropped face; the rest are :mod:`facefair.align` backends.
DETECT_CHOICES = ("none", "auto", "dlib-hog", "dlib", "mtcnn")


@dataclass
class ServeConfig:
    checkpoint: str
    detect: str = "none"
    device: str = "cpu"
    # Limits.  Bytes bound the upload itself; sides/pixels bound the decoded size, which a small
    # PNG can inflate enormously (a "decompression bomb"), so both are checked before decoding.
    max_bytes: int = 15 * 2**20
    max_side: int = 8000
    max_pixels: int = 50_000_000
    max_faces: int = 32            # bounds model work per request on crowded photos
    # Uploads decoded at once; the rest wait.  A decode may hold max_pixels x 4 bytes, so this (not
    # the number of clients) bounds the memory that parallel uploads can take.
    max_decodes: int = 2
    # Detection runs on a copy whose longer side is at most this; chips are cut from the full image.
    detect_side: int = 1280
    padding: Optional[float] = None  # chip padding; None: the model's measured training-chip padding, else 0.25
    tta: bool = TTA_DEFAULT        # average with the mirrored face, as every command that predicts
    demo_image: Optional[str] = None  # served at /demo.jpg; the page loads it with ?demo=1
    trust_checkpoint: bool = False    # unpickle an old .pt beyond tensors (--trust-checkpoint)

    def __post_init__(self) -> None:
        if self.detect not in DETECT_CHOICES:
            raise ValueError(f"unknown detect {self.detect!r}: {', '.join(DETECT_CHOICES)}")
        for name in ("max_bytes", "max_side", "max_pixels", "max_faces", "detect_side", "max_decodes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def limits(self) -> dict:
        return {"max_bytes": self.max_bytes, "max_side": self.max_side, "max_pixels": self.max_pixels,
                "max_faces": self.max_faces}
