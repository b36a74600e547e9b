"""Aligned face chips, FairFace's way: a similarity transform (rotation, scale, shift) that puts
the 5 landmarks on dlib's template, with ``padding`` around the template (FairFace released
chips with padding 0.25 and 1.25).

Faces with dlib's landmarks go through ``dlib.get_face_chips`` itself, so chips are exactly the
ones FairFace's predict.py cuts.  MTCNN's landmarks are other points (eye centres, nose tip,
mouth corners); :data:`MTCNN5_TEMPLATE` places them in dlib's template frame, so an MTCNN chip
has the same geometry on average.  The pure-PIL path (:func:`extract_chip`) is used for those
and wherever dlib is not installed; on dlib landmarks it reproduces dlib's chips to within
interpolation noise (tested).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from facefair.align.detectors import Face

#: dlib's 5-point template on the unit square, before padding (``get_face_chip_details`` in
#: dlib/image_transforms/interpolation.h), in the 5-point predictor's order: image-right eye outer
#: and inner corner, image-left eye outer and inner corner, base of the nose.
DLIB5_TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])

#: Where MTCNN's points (image-left eye, image-right eye, nose tip, mouth left, mouth right) fall
#: in the same unit frame: the median, over 396 UTKFace faces (every 50th file) where both detectors found
#: the one face, of MTCNN's landmarks mapped through the transform that dlib's landmarks define
#: (``fit_template`` below; re-fit with it if facenet-pytorch's landmarks ever change).
MTCNN5_TEMPLATE = np.array([
    [0.2289, 0.2085],
    [0.7684, 0.2085],
    [0.4949, 0.5362],
    [0.2540, 0.7718],
    [0.7420, 0.7692],
])

TEMPLATES = {"dlib5": DLIB5_TEMPLATE, "mtcnn5": MTCNN5_TEMPLATE}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift taking ``src`` points onto ``dst`` (Umeyama,
    reflections excluded); a 2x3 matrix ``M`` with ``dst ~ M @ [x, y, 1]``.  dlib's
    ``find_similarity_transform`` solves the same problem."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def chip_matrix(landmarks: np.ndarray, scheme: str, size: int, padding: float) -> np.ndarray:
    """2x3 matrix from chip pixel coordinates to image pixel coordinates (both with pixel
    centres on integers, as dlib's points are)."""
    if padding < 0 or size <= 0:
        raise ValueError(f"need padding >= 0 and size > 0, got padding={padding}, size={size}")
    template = (padding + TEMPLATES[scheme]) / (2 * padding + 1) * size
    return similarity_transform(template, landmarks)


def extract_chip(image: Image.Image, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` chip that ``matrix`` (chip -> image, pixel centres on integers)
    cuts from ``image``; parts outside the image are black, as in dlib."""
    linear, shift = matrix[:, :2], matrix[:, 2]
    # PIL samples at continuous coordinates (pixel i covers [i, i+1)); move both ends by half a pixel.
    shift = shift + 0.5 - linear @ np.array([0.5, 0.5])
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64) @ linear.T + shift
    left, top = np.floor(corners.min(0)).astype(int) - 2
    right, bottom = np.ceil(corners.max(0)).astype(int) + 2
    # Only the region under the chip is cropped (crop pads with black past the border) ...
    region = image.crop((int(left), int(top), int(right), int(bottom)))
    shift = shift - np.array([left, top])
    # ... and shrunk by whole factors first when the face is much larger than the chip: bilinear
    # sampling alone would alias (dlib uses an image pyramid for the same reason).
    factor = int(np.sqrt(abs(np.linalg.det(linear))))
    if factor >= 2:
        region = region.reduce(factor)
        linear, shift = linear / factor, shift / factor
    coefficients = (linear[0, 0], linear[0, 1], shift[0], linear[1, 0], linear[1, 1], shift[1])
    chip = region.transform((size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)
    return np.asarray(chip.convert("RGB"), dtype=np.uint8)


def _dlib_chips(image: np.ndarray, faces: Sequence[Face], size: int, padding: float) -> list[np.ndarray]:
    import dlib  # noqa: PLC0415 - optional; only called when importable

    detections = dlib.full_object_detections()
    for face in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
        detections.append(dlib.full_object_detection(dlib.rectangle(x0, y0, x1 - 1, y1 - 1), points))
    return [np.asarray(chip, dtype=np.uint8) for chip in dlib.get_face_chips(image, detections, size=size,
                                                                             padding=padding)]


def _have_dlib() -> bool:
    try:
        import dlib  # noqa: PLC0415
    except ImportError:
        return False
    return dlib is not None


def align_faces(image: np.ndarray, faces: Sequence[Face], size: int = 224, padding: float = 0.25,
                use_dlib: bool = True) -> list[np.ndarray]:
    """One (size, size, 3) uint8 chip per face, in order.  dlib-landmark faces use dlib's own
    ``get_face_chips`` (FairFace's exact code path) unless ``use_dlib`` is False or dlib is missing."""
    if not faces:
        return []
    chips: list = [None] * len(faces)
    dlib_rows = [i for i, f in enumerate(faces) if f.scheme == "dlib5"] if use_dlib and _have_dlib() else []
    if dlib_rows:
        for i, chip in zip(dlib_rows, _dlib_chips(np.ascontiguousarray(image), [faces[i] for i in dlib_rows],
                                                  size, padding)):
            chips[i] = chip
    rest = [i for i in range(len(faces)) if chips[i] is None]
    if rest:
        pil = Image.fromarray(image)
        for i in rest:
            chips[i] = extract_chip(pil, chip_matrix(faces[i].landmarks, faces[i].scheme, size, padding), size)
    return chips


def fit_template(reference: Sequence[np.ndarray], other: Sequence[np.ndarray],
                 reference_scheme: str = "dlib5") -> np.ndarray:
    """Where another detector's 5 points sit in the unit template frame: each face's ``other``
    landmarks mapped through the transform its ``reference`` landmarks define, median over faces.
    This is how :data:`MTCNN5_TEMPLATE` was made."""
    mapped = []
    for ref, oth in zip(reference, other):
        matrix = similarity_transform(ref, TEMPLATES[reference_scheme])  # image -> unit frame
        mapped.append(np.asarray(oth, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2])
    return np.median(np.stack(mapped), axis=0)
