"""Are the faces being evaluated framed like the training chips?  Measured, not assumed.

A model trained on tight chips (UTKFace, FairFace at padding 0.25) sees a small face in a wide
photo as something else entirely: FairFace's margin-1.25 photos evaluated as they ship gave
gender 0.62 and age-group 0.14 with no warning.  :func:`measure_framing` runs a detector over a
sample of images and reports how much of the image the face fills and where its centre sits;
:func:`framing_warning` compares two such measurements (images at hand vs training chips) and
returns one sentence suggesting ``--detect`` when they differ.

Training measures its chips once (:func:`measure_chip_framing`) and stores the result in the model
files, with the align padding that reproduces them; ``predict --detect`` and ``evaluate --detect``
cut chips with that padding, and both check the framing of already-cropped faces against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from facefair.align.detectors import Face

#: FairFace's padding, used when a model carries no measured framing (older runs).
DEFAULT_PADDING = 0.25


@dataclass(frozen=True)
class Framing:
    images: int           # images measured
    found: float          # share where the detector found a face
    face_size: float      # median face-box width / image width, over found faces
    centre_x: float       # median face-box centre, as a share of the image width
    centre_y: float       # ... and of its height

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "Framing":
        return cls(**{k: values[k] for k in ("images", "found", "face_size", "centre_x", "centre_y")})


def pad_edges(image: np.ndarray, border: float) -> np.ndarray:
    """The image with ``border`` x its longer side of edge pixels around it: a detector then finds
    faces that touch the frame (tight chips) as it would in a wider photo."""
    pad = int(round(border * max(image.shape[:2])))
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else image


def main_face(faces: Sequence["Face"]) -> "Face | None":
    """The largest face: a dataset chip is centred on one person, bystanders are smaller."""
    return max(faces, key=lambda f: f.width * f.height) if faces else None


def _sample(paths: Sequence[str], n: int, seed: int) -> list[str]:
    if len(paths) <= n:
        return list(paths)
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=n, replace=False))]


def _detector(name: str):
    from facefair.align.detectors import DetectorConfig, MissingBackend, make_detector
    try:
        return make_detector(DetectorConfig(backend=name))
    except MissingBackend as error:
        raise ValueError(str(error)) from None


def _sampled_faces(paths: Sequence[str], detector, sample: int, border: float, seed: int, max_side: int):
    """(image, largest face in the padded image or None, pad) for each readable sampled image."""
    from facefair.align.pipeline import load_photo

    for path in _sample(list(paths), sample, seed):
        try:
            image, _, _, _ = load_photo(path, max_side)
        except (OSError, ValueError, SyntaxError):
            continue
        padded = pad_edges(image, border)
        yield image, main_face(detector.detect(padded)), (padded.shape[0] - image.shape[0]) // 2


def _framing(found: list) -> Framing:
    """Box size and centre medians over ``_sampled_faces`` records."""
    if not found:
        raise ValueError("none of the sampled images could be read to measure the face framing")
    sizes, xs, ys = [], [], []
    for image, face, pad in found:
        if face is None:
            continue
        height, width = image.shape[:2]
        x0, y0, x1, y1 = face.box
        sizes.append((x1 - x0) / width)
        xs.append(((x0 + x1) / 2 - pad) / width)
        ys.append(((y0 + y1) / 2 - pad) / height)

    def median(values):
        return float(np.median(values)) if values else float("nan")
    return Framing(len(found), len(sizes) / len(found), median(sizes), median(xs), median(ys))


def measure_framing(paths: Sequence[str], detector: str = "dlib-hog", sample: int = 40, border: float = 0.25,
                    seed: int = 0, max_side: int = 800) -> Framing:
    """Detect the largest face in each of ``sample`` images (padded by ``border`` with their edge
    pixels, so tight crops are found too) and summarise its size and position."""
    return _framing(list(_sampled_faces(paths, _detector(detector), sample, border, seed, max_side)))


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


def _landmark_spread(face: "Face", width: int) -> float:
    """RMS distance of the face's 5 landmarks from their centre, over the image width.  Landmarks,
    not the box: a HOG detector's boxes come in pyramid steps of 20%, too coarse to tell padding
    0.25 from 0.1."""
    points = np.asarray(face.landmarks, dtype=float).reshape(-1, 2)
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean())) / width


def measure_chip_framing(paths: Sequence[str], detector: str = "dlib-hog", sample: int = 40, border: float = 0.25,
                         seed: int = 0, reference_padding: float = DEFAULT_PADDING, max_side: int = 800) -> dict:
    """How the training chips are framed, and the ``facefair align`` padding that cuts chips framed
    the same way from raw photos.

    A chip aligned with padding ``p`` holds the landmark template in the central 1/(1+2p) of its
    side, so the face's landmark spread is ``k/(1+2p)`` of the chip's width for a constant ``k``
    of the template and landmark scheme.  ``k`` is measured, not assumed: each sampled training
    image is re-aligned at ``reference_padding`` and measured again.  The chips' own spread ``s``
    then gives the padding ``(k/s - 1)/2``.  Returns a JSON-ready dict (``detector``, ``measured``: a
    :class:`Framing`, ``padding``: None when no face was found to calibrate on)."""
    from facefair.align.chips import align_faces

    found_detector = _detector(detector)
    found = list(_sampled_faces(paths, found_detector, sample, border, seed, max_side))
    measured = _framing(found)
    constants, spreads = [], []
    for image, face, _ in found:  # one detection per image serves the framing and the calibration
        if face is None:
            continue
        side = max(64, min(256, max(image.shape[:2])))
        chip = align_faces(pad_edges(image, border), [face], side, reference_padding)[0]
        again = main_face(found_detector.detect(pad_edges(chip, border)))
        if again is not None:
            spreads.append(_landmark_spread(face, image.shape[1]))
            constants.append(_landmark_spread(again, chip.shape[1]) * (1 + 2 * reference_padding))
    padding = None
    if constants:
        padding = round(max(0.0, (float(np.median(constants)) / float(np.median(spreads)) - 1) / 2), 3)
    return {"detector": detector, "measured": measured.to_dict(), "padding": padding,
            "calibrated_on": len(constants)}


def chip_padding(framing: Optional[Mapping]) -> float:
    """The padding a model's chips were cut with (measured at training), else FairFace's 0.25."""
    padding = (framing or {}).get("padding")
    return float(padding) if padding is not None else DEFAULT_PADDING


def framing_report(paths: Sequence[str], framing: Optional[Mapping], sample: int = 24, seed: int = 0) -> Optional[dict]:
    """The images' framing against the training chips' (``framing``: what the model files hold):
    ``{"at_hand", "training", "warning"}``, the warning None when they match.  None when the model
    carries no measurement (older runs) or the detector is not installed: nothing to compare."""
    if not framing or not framing.get("measured") or sample <= 0:
        return None
    try:
        at_hand = measure_framing(paths, framing.get("detector", "dlib-hog"), sample, seed=seed)
    except ValueError:
        return None
    training = Framing.from_dict(framing["measured"])
    return {"at_hand": at_hand.to_dict(), "training": training.to_dict(),
            "warning": framing_warning(at_hand, training)}
