"""Image corruptions at graded severities 1-5, applied to one RGB uint8 image at a time.

The standard ones are Hendrycks & Dietterich's ImageNet-C definitions as the
``imagecorruptions-imaug`` package implements them (the maintained fork of ``imagecorruptions``
that runs on current numpy/scikit-image), so "gaussian_blur at severity 3" means what it means in
the robustness literature.  Three conditions that face photos meet and ImageNet-C lacks are
defined here, each a few lines with the severity table in plain sight: ``low_resolution`` (a face
a few dozen pixels wide, scaled back up), ``darkness`` (under-exposure) and ``occlusion`` (a grey
square, as a hand, a mask or sunglasses would cover the face).

Corruptions that draw random numbers (noise, occlusion position) are seeded per image, so a run
is repeatable and every model sees exactly the same corrupted faces.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)

#: Our names -> imagecorruptions' names (ImageNet-C severity tables).
STANDARD = {
    "gaussian_blur": "gaussian_blur",
    "defocus_blur": "defocus_blur",
    "motion_blur": "motion_blur",
    "gaussian_noise": "gaussian_noise",
    "shot_noise": "shot_noise",
    "jpeg_compression": "jpeg_compression",
    "pixelate": "pixelate",
    "brightness": "brightness",
    "contrast": "contrast",
}

#: Side in pixels the face is shrunk to before being scaled back up (area-averaged down, bilinear up).
LOW_RESOLUTION_SIDES = (48, 32, 24, 16, 12)
#: Share of the light kept (applied in linear light, sRGB gamma 2.2): a photo 0.7 to 4 stops under-exposed.
DARKNESS_GAINS = (0.6, 0.4, 0.25, 0.15, 0.07)
#: Side of the occluding square as a share of the image side.
OCCLUSION_SIDES = (0.2, 0.3, 0.4, 0.5, 0.6)
OCCLUSION_GREY = (124, 116, 104)  # ImageNet mean: the patch carries no colour cue

#: Every corruption by name, in the order reports list them; ``reframe-*`` conditions are not here
#: (they re-detect faces, see :mod:`facefair.robustness.reframe`).
DEFAULT_CORRUPTIONS = ("gaussian_blur", "motion_blur", "gaussian_noise", "jpeg_compression", "low_resolution",
                       "brightness", "contrast", "darkness", "occlusion")


def _check_severity(severity: int) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")


def low_resolution(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    side = LOW_RESOLUTION_SIDES[severity - 1]
    height, width = image.shape[:2]
    if min(height, width) <= side:
        return image
    scale = side / min(height, width)
    small = Image.fromarray(image).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                          Image.Resampling.BOX)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def darkness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    linear = (image.astype(np.float32) / 255.0) ** 2.2
    dark = (linear * DARKNESS_GAINS[severity - 1]) ** (1 / 2.2)
    return np.clip(np.rint(dark * 255.0), 0, 255).astype(np.uint8)


def occlusion(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    side = max(1, round(OCCLUSION_SIDES[severity - 1] * min(height, width)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    out = image.copy()
    out[top:top + side, left:left + side] = OCCLUSION_GREY
    return out


OWN: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "low_resolution": low_resolution, "darkness": darkness, "occlusion": occlusion,
}

CORRUPTIONS = tuple(STANDARD) + tuple(OWN)


def check_names(names) -> tuple[str, ...]:
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {', '.join(unknown)}; known: {', '.join(CORRUPTIONS)} "
                         "and reframe")
    return tuple(names)


def _standard(name: str, image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    try:
        from imagecorruptions import corrupt
    except ImportError as error:
        raise ValueError("the standard corruptions need imagecorruptions: pip install imagecorruptions-imaug "
                         "(or pip install 'facefair[robustness]')") from error
    # imagecorruptions draws from numpy's global generator: seed it for this image, then put the
    # caller's state back so nothing outside sees a difference.
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        out = corrupt(image, corruption_name=STANDARD[name], severity=severity)
    finally:
        np.random.set_state(state)
    out = np.asarray(out)
    if out.shape != image.shape:  # a few corruptions hand back another size for non-square inputs
        out = np.asarray(Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize(
            (image.shape[1], image.shape[0]), Image.Resampling.BILINEAR))
    return np.clip(out, 0, 255).astype(np.uint8)


def apply_corruption(name: str, image: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """``image`` (H, W, 3) uint8 corrupted by ``name`` at ``severity`` (1-5); ``seed`` fixes the
    random draws (use a different one per image)."""
    _check_severity(severity)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {image.shape} and dtype {image.dtype}")
    if name in OWN:
        return OWN[name](image, severity, np.random.default_rng(seed))
    if name in STANDARD:
        return _standard(name, image, severity, seed)
    check_names([name])
    raise AssertionError("unreachable")
