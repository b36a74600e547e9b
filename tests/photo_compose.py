"""Test photos with known faces: real aligned face chips (UTKFace) pasted, scaled and rotated,
onto a larger smooth-noise canvas, so every face's box is known without hand labelling.  Used by
the tests and to measure detection recall; also makes face-free photos (background only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

#: Where the face sits in a UTKFace chip, as fractions of the chip's side: dlib's HOG box on
#: padded UTKFace chips has a median of (6, 7, 192, 192) px on the 200 px chip (50 faces) —
#: the chips are cropped tightly around the face, so the face box is nearly the whole chip.
UTK_FACE_BOX = (0.03, 0.035, 0.96, 0.96)


@dataclass
class ComposedPhoto:
    image: np.ndarray                       # RGB uint8
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # ground truth x0, y0, x1, y1
    sources: list[str] = field(default_factory=list)
    angles: list[float] = field(default_factory=list)
    path: Optional[str] = None


def background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Smooth random colour blobs plus fine noise: texture for the detector, no face-like structure."""
    coarse = rng.integers(30, 226, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 40))
    noise = rng.normal(0, 8, size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def _boxes_overlap(a, b, margin: float) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def compose_photo(face_paths: Sequence[str | Path], rng: np.random.Generator, *, canvas: tuple[int, int] = (640, 480),
                  face_sizes: tuple[int, int] = (90, 170), max_angle: float = 15.0,
                  face_box: tuple[float, float, float, float] = UTK_FACE_BOX) -> ComposedPhoto:
    """Paste each face chip at a random size (pixels, chip side), angle (degrees) and free place.
    Faces that do not fit without overlapping are left out (``sources`` lists those pasted)."""
    width, height = canvas
    image = background(width, height, rng)
    photo = ComposedPhoto(np.empty(0))
    placed: list[tuple[float, float, float, float]] = []
    for face_path in face_paths:
        side = int(rng.integers(face_sizes[0], face_sizes[1] + 1))
        angle = float(rng.uniform(-max_angle, max_angle))
        chip = Image.open(face_path).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        # Soft-edged mask: a hard square border is an edge no real photo has around a face.
        mask = Image.new("L", (side, side), 0)
        inner = Image.new("L", (side - 6, side - 6), 255)
        mask.paste(inner, (3, 3))
        mask = mask.filter(ImageFilter.GaussianBlur(2))
        chip = chip.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        for _attempt in range(50):
            x = int(rng.integers(0, width - chip.width + 1)) if width > chip.width else 0
            y = int(rng.integers(0, height - chip.height + 1)) if height > chip.height else 0
            cx, cy = x + chip.width / 2, y + chip.height / 2
            # The face box turns with the face, but a detector still reports an upright box of
            # about the face's size, so the truth is the unrotated box about the same centre.
            box = (cx + (face_box[0] - 0.5) * side, cy + (face_box[1] - 0.5) * side,
                   cx + (face_box[2] - 0.5) * side, cy + (face_box[3] - 0.5) * side)
            if not any(_boxes_overlap(box, other, margin=0.15 * side) for other in placed):
                image.paste(chip, (x, y), mask)
                placed.append(box)
                photo.boxes.append(tuple(round(v, 1) for v in box))
                photo.sources.append(str(face_path))
                photo.angles.append(round(angle, 2))
                break
    photo.image = np.asarray(image)
    return photo


def compose_set(face_paths: Sequence[str | Path], out_dir: str | Path, *, photos: int, faces_per_photo=(2, 4),
                no_face_photos: int = 0, seed: int = 0, canvas: tuple[int, int] = (640, 480),
                face_sizes: tuple[int, int] = (90, 170), max_angle: float = 15.0) -> pd.DataFrame:
    """Write ``photos`` composed JPEGs (plus ``no_face_photos`` background-only ones) to
    ``out_dir``; returns the ground truth, one row per face (``path``, ``box_x0..box_y1``,
    ``source``, ``angle``) and one row with empty box per face-free photo."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = list(face_paths)
    rows = []
    for index in range(photos):
        count = int(rng.integers(faces_per_photo[0], faces_per_photo[1] + 1))
        chosen = [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
        photo = compose_photo(chosen, rng, canvas=canvas, face_sizes=face_sizes, max_angle=max_angle)
        path = out / f"photo_{index:03d}.jpg"
        Image.fromarray(photo.image).save(path, quality=92)
        for box, source, angle in zip(photo.boxes, photo.sources, photo.angles):
            rows.append({"path": str(path), "box_x0": box[0], "box_y0": box[1], "box_x1": box[2], "box_y1": box[3],
                         "source": source, "angle": angle})
    for index in range(no_face_photos):
        path = out / f"noface_{index:03d}.jpg"
        background(*canvas, rng).save(path, quality=92)
        rows.append({"path": str(path), "box_x0": np.nan, "box_y0": np.nan, "box_x1": np.nan, "box_y1": np.nan,
                     "source": None, "angle": np.nan})
    return pd.DataFrame(rows)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(truth: pd.DataFrame, found: pd.DataFrame, min_iou: float = 0.4) -> pd.DataFrame:
    """Greedy one-to-one matching per photo (best IoU first).  ``truth`` and ``found`` have
    ``path`` and ``box_x0..box_y1``; returns ``truth`` with ``iou`` (best matched, 0 if missed)
    and ``detected``, and ``attrs['false_positives']`` (detections matching no face)."""
    box_columns = ["box_x0", "box_y0", "box_x1", "box_y1"]
    truth = truth[truth["box_x0"].notna()].reset_index(drop=True).copy()
    truth["iou"] = 0.0
    false_positives = 0
    for path, found_here in found.groupby("path"):
        rows = truth.index[truth["path"] == path]
        pairs = sorted(((iou(truth.loc[r, box_columns].to_numpy(dtype=float), f), r, j) for r in rows
                        for j, f in enumerate(found_here[box_columns].to_numpy())), reverse=True)
        used_truth, used_found = set(), set()
        for value, r, j in pairs:
            if value >= min_iou and r not in used_truth and j not in used_found:
                truth.loc[r, "iou"] = value
                used_truth.add(r)
                used_found.add(j)
        false_positives += len(found_here) - len(used_found)
    truth["detected"] = truth["iou"] >= min_iou
    truth.attrs["false_positives"] = false_positives
    return truth
