"""Are the faces being evaluated framed like the training chips?  Measured, not assumed.

A model trained on tight chips (UTKFace, FairFace at padding 0.25) sees a small face in a wide
photo as something else entirely: FairFace's margin-1.25 photos evaluated as they ship gave
gender 0.62 and age-group 0.14 with no warning.  :func:`measure_framing` runs a detector over a
sample of images and reports how much of the image the face fills and where its centre sits;
:func:`framing_warning` compares two such measurements (images at hand vs training chips) and
returns one sentence suggesting ``--detect`` when they differ.  evaluate/predict can call
:func:`check_framing` on the paths they are about to read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Framing:
    images: int           # images measured
    found: float          # share where the detector found a face
    face_size: float      # median face-box width / image width, over found faces
    centre_x: float       # median face-box centre, as a share of the image width
    centre_y: float       # ... and of its height

    def to_dict(self) -> dict:
        return asdict(self)


def _sample(paths: Sequence[str], n: int, seed: int) -> list[str]:
    if len(paths) <= n:
        return list(paths)
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=n, replace=False))]


def measure_framing(paths: Sequence[str], detector: str = "dlib-hog", sample: int = 40, border: float = 0.25,
                    seed: int = 0, max_side: int = 800) -> Framing:
    """Detect the largest face in each of ``sample`` images (padded by ``border`` with their edge
    pixels, so tight crops are found too) and summarise its size and position."""
    from facefair.align.detectors import DetectorConfig, MissingBackend, make_detector
    from facefair.align.pipeline import load_photo
    from facefair.robustness.reframe import main_face, pad_edges

    try:
        found_detector = make_detector(DetectorConfig(backend=detector))
    except MissingBackend as error:
        raise ValueError(str(error)) from None
    chosen = _sample(list(paths), sample, seed)
    sizes, xs, ys, measured = [], [], [], 0
    for path in chosen:
        try:
            image, _, _, _ = load_photo(path, max_side)
        except (OSError, ValueError, SyntaxError):
            continue
        measured += 1
        height, width = image.shape[:2]
        padded = pad_edges(image, border)
        pad = (padded.shape[0] - height) // 2
        face = main_face(found_detector.detect(padded))
        if face is None:
            continue
        x0, y0, x1, y1 = face.box
        sizes.append((x1 - x0) / width)
        xs.append(((x0 + x1) / 2 - pad) / width)
        ys.append(((y0 + y1) / 2 - pad) / height)
    if not measured:
        raise ValueError("none of the sampled images could be read to measure the face framing")

    def median(values):
        return float(np.median(values)) if values else float("nan")
    return Framing(measured, len(sizes) / measured, median(sizes), median(xs), median(ys))


def framing_warning(at_hand: Framing, training: Framing, size_tolerance: float = 0.25,
                    shift_tolerance: float = 0.12) -> Optional[str]:
    """One sentence when faces fill a share of the image more than ``size_tolerance`` (relative)
    away from the training chips', or sit more than ``shift_tolerance`` of the side off-centre
    from them; None when they match (or nothing was detected to compare)."""
    if np.isnan(at_hand.face_size) or np.isnan(training.face_size):
        if at_hand.found == 0 and training.found > 0:
            return (f"no face was detected in {at_hand.images} sampled images, unlike the training chips: are these "
                    "face photos? Use --detect to find and align the faces first.")
        return None
    ratio = at_hand.face_size / training.face_size
    shift = max(abs(at_hand.centre_x - training.centre_x), abs(at_hand.centre_y - training.centre_y))
    if abs(ratio - 1) <= size_tolerance and shift <= shift_tolerance:
        return None
    parts = [f"faces fill {at_hand.face_size:.0%} of the image width (median of {at_hand.images} sampled images) "
             f"against {training.face_size:.0%} in the training chips"]
    if shift > shift_tolerance:
        parts.append(f"and sit {shift:.0%} of the side away from where the training chips have them")
    return ("; ".join(parts) + ": these images are framed unlike what the model was trained on, so its figures "
            "will be off. Use --detect to re-detect and align the faces the way the training chips were cut.")


def check_framing(paths: Sequence[str], training: Framing, detector: str = "dlib-hog", sample: int = 40,
                  seed: int = 0) -> Optional[str]:
    """The warning for ``paths`` against a training measurement (None: framed alike)."""
    return framing_warning(measure_framing(paths, detector, sample, seed=seed), training)
