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

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from facefair.align.chips import align_faces
from facefair.align.detectors import DetectorConfig, Face
from facefair.align.framing import main_face, pad_edges

#: Condition names: ``reframe-<detector>``; the severity column holds the padding.
PREFIX = "reframe-"


@dataclass(frozen=True)
class ReframeConfig:
    detectors: tuple[str, ...] = ("dlib-hog", "mtcnn")
    paddings: tuple[float, ...] = (0.25, 0.5, 1.25)
    border: float = 0.25   # share of the image side added around a tight crop before detection
    upsample: int = 1      # dlib: FairFace's setting
    #: Folder that keeps each detector's faces (box + landmarks, JSON) per image: auditing several
    #: models on the same faces detects them once.  None: detect every time.
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if any(p < 0 for p in self.paddings):
            raise ValueError(f"paddings must be >= 0, got {self.paddings}")
        if self.border < 0:
            raise ValueError(f"border must be >= 0, got {self.border}")


class DetectionCache:
    """The main face a detector found in each image, on disk as JSON (never pickle: a cache file
    from elsewhere cannot run code), keyed by the image file (path, size, mtime) and by everything
    that changes what the detector sees (detector, border, upsampling, decoded side)."""

    def __init__(self, folder: str | Path, detector: str, config: ReframeConfig, side: int):
        name = f"{detector}-border{config.border:g}-up{config.upsample}-side{side}.json"
        self.path = Path(folder) / name
        self.faces: dict[str, Optional[dict]] = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, ValueError):
                loaded = {}
            # a truncated or foreign file: detect again and overwrite it
            self.faces = loaded if isinstance(loaded, dict) else {}
        self.changed = False

    @staticmethod
    def key(path: str) -> Optional[str]:
        """None for a file that cannot be read (it has no prediction anyway, and nothing to cache)."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return hashlib.sha1(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()

    def get(self, key: Optional[str]) -> tuple[bool, Optional[Face]]:
        """(known, face): known is False when this image was never detected with these settings."""
        if key is None or key not in self.faces:
            return False, None
        entry = self.faces[key]
        try:
            if entry is None:
                return True, None
            box = tuple(float(v) for v in entry["box"])
            if len(box) != 4:
                raise ValueError("a box has 4 numbers")
            return True, Face(box=box, score=float(entry["score"]), scheme=str(entry["scheme"]),
                              landmarks=np.asarray(entry["landmarks"], dtype=np.float64).reshape(5, 2))
        except (KeyError, TypeError, ValueError):
            return False, None

    def put(self, key: str, face: Optional[Face]) -> None:
        self.faces[key] = None if face is None else {
            "box": [float(v) for v in face.box], "score": float(face.score),
            "landmarks": np.asarray(face.landmarks, dtype=float).tolist(), "scheme": face.scheme}
        self.changed = True

    def save(self) -> None:
        from facefair.runtime import write_atomic
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, lambda tmp: tmp.write_text(json.dumps(self.faces)))


def reframe_images(images: np.ndarray, detector: str, paddings: Sequence[float], config: ReframeConfig,
                   progress=None, paths: Optional[Sequence[str]] = None) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Per padding, (N, S, S, 3) chips of side S = the input side, and a bool mask of the faces
    the detector found (rows it missed are left black and must not be predicted).  With
    ``config.cache_dir`` and the images' ``paths``, faces detected before are read back."""
    side = images.shape[1]
    cache = DetectionCache(config.cache_dir, detector, config, side) if config.cache_dir and paths is not None \
        else None
    found_detector = None
    chips = {p: np.zeros_like(images) for p in paddings}
    found = np.zeros(len(images), dtype=bool)
    for i, image in enumerate(images):
        padded = pad_edges(image, config.border)
        key = DetectionCache.key(paths[i]) if cache is not None else None
        known, face = cache.get(key) if cache is not None else (False, None)
        if not known:
            if found_detector is None:
                from facefair.inference.photos import build_detector
                found_detector = build_detector(DetectorConfig(backend=detector, upsample=config.upsample))
            face = main_face(found_detector.detect(padded))
            if cache is not None and key is not None:
                cache.put(key, face)
        if progress is not None:
            progress.update(1)
        if face is None:
            continue
        found[i] = True
        for padding in paddings:
            chips[padding][i] = align_faces(padded, [face], side, padding)[0]
    if cache is not None:
        cache.save()
    return chips, found
