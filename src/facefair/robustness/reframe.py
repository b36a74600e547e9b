"""Re-framing: each test face re-detected and re-aligned through facefair's align pipeline.

A dataset chip (UTKFace) is already a tight crop, so it is padded by ``border`` of its side with
its edge pixels first (what ``facefair align --border`` does, since a detector needs context),
then the detector finds the face, its 5 landmarks place it on dlib's template, and a chip is cut
with each ``padding`` (FairFace released 0.25 and 1.25).  This is how the model's inputs look
when photos reach it through ``facefair align`` / ``predict --detect`` instead of the dataset's
own cropping.  A face the detector misses has no chip; its row gets no prediction and counts
against the condition's ``coverage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facefair.align.chips import align_faces
from facefair.align.detectors import DetectorConfig, MissingBackend, make_detector
from facefair.align.framing import main_face, pad_edges

#: Condition names: ``reframe-<detector>``; the severity column holds the padding.
PREFIX = "reframe-"


@dataclass(frozen=True)
class ReframeConfig:
    detectors: tuple[str, ...] = ("dlib-hog", "mtcnn")
    paddings: tuple[float, ...] = (0.25, 0.5, 1.25)
    border: float = 0.25   # share of the image side added around a tight crop before detection
    upsample: int = 1      # dlib: FairFace's setting

    def __post_init__(self) -> None:
        if any(p < 0 for p in self.paddings):
            raise ValueError(f"paddings must be >= 0, got {self.paddings}")
        if self.border < 0:
            raise ValueError(f"border must be >= 0, got {self.border}")


def reframe_images(images: np.ndarray, detector: str, paddings: Sequence[float], config: ReframeConfig,
                   progress=None) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Per padding, (N, S, S, 3) chips of side S = the input side, and a bool mask of the faces
    the detector found (rows it missed are left black and must not be predicted)."""
    try:
        found_detector = make_detector(DetectorConfig(backend=detector, upsample=config.upsample))
    except MissingBackend as error:
        raise ValueError(str(error)) from None
    side = images.shape[1]
    chips = {p: np.zeros_like(images) for p in paddings}
    found = np.zeros(len(images), dtype=bool)
    for i, image in enumerate(images):
        padded = pad_edges(image, config.border)
        face = main_face(found_detector.detect(padded))
        if progress is not None:
            progress.update(1)
        if face is None:
            continue
        found[i] = True
        for padding in paddings:
            chips[padding][i] = align_faces(padded, [face], side, padding)[0]
    return chips, found
