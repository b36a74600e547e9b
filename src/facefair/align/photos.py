"""Predict on raw photos: every face found is aligned FairFace's way and classified.

The model sees each chip through the same preprocessing as in training and in
``facefair predict`` (uint8 NHWC resized with PIL like :func:`facefair.data.images.decode`,
then :func:`facefair.data.batches.to_float`), in batches across photos so many small photos
still fill a batch.  Output: one row per face with its box, our columns (``T_pred``,
``T_prob_<class>``, ``age_pred``) and the columns FairFace's predict.py writes, its predicted
labels renamed ``race_fair``, ``race4_fair``, ``gender_fair``, ``age_fair`` (FairFace calls them
``race``, ``gender``, ``age``: the names under which the predictions table holds *true* labels, which
the audit would read as such), and its ``*_scores_fair`` lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from facefair import labels as L
from facefair.align.detectors import Detector, DetectorConfig
from facefair.align.pipeline import AlignConfig, PhotoFaces, chip_name, face_record, iter_photos
from facefair.evaluate.inference import predict_batches
from facefair.table import prediction_columns
from facefair.flags import TTA_DEFAULT
from facefair.models.multitask import MultiTaskModel

log = logging.getLogger(__name__)

#: FairFace predict.py's label columns -> ours: predicted labels never take a true label's column name.
FAIRFACE_LABELS = {"race": "race_fair", "race4": "race4_fair", "gender": "gender_fair", "age": "age_fair"}
FAIRFACE_COLUMNS = ["face_name_align", *FAIRFACE_LABELS.values(), "race_scores_fair", "race_scores_fair_4",
                    "gender_scores_fair", "age_scores_fair"]


class _ChipBatch:
    """One in-memory batch in the ``iterate`` shape :func:`predict_batches` reads."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def iterate(self, order: np.ndarray):
        yield torch.from_numpy(self.images[order]), order, []


def resize_chip(chip: np.ndarray, size: int) -> np.ndarray:
    """Chip -> model input size with the exact resize :func:`facefair.data.images.decode` applies
    to image files, so a chip predicts the same whether saved first or not."""
    if chip.shape[0] == size and chip.shape[1] == size:
        return chip
    return np.asarray(Image.fromarray(chip).resize((size, size), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def _scores_text(probabilities: np.ndarray) -> str:
    # FairFace writes str(numpy array); same look, but never wrapped over lines inside a CSV cell.
    return np.array2string(np.asarray(probabilities, dtype=np.float32), separator=" ", max_line_width=10**6,
                           precision=6)


def _race4(probabilities: np.ndarray, scheme: str) -> np.ndarray:
    """race4 probabilities from a race7/race5 head: mass summed per race4 class; classes with no
    race4 counterpart (Latino_Hispanic, Middle Eastern, Others) dropped and the rest renormalised."""
    if scheme == "race4":
        return probabilities
    mapping = L.RACE_MAPPINGS[(scheme, "race4")]
    target = L.RACE_SCHEMES["race4"]
    out = np.zeros((len(probabilities), len(target)), dtype=np.float64)
    for i, name in enumerate(L.RACE_SCHEMES[scheme]):
        if mapping.get(name) is not None:
            out[:, target.index(mapping[name])] += probabilities[:, i]
    return out / np.clip(out.sum(1, keepdims=True), 1e-12, None)


def fairface_columns(model: MultiTaskModel, outputs: dict[str, np.ndarray]) -> dict[str, list]:
    """FairFace predict.py's columns where this model has the task: labels (under the names of
    ``FAIRFACE_LABELS``) and score lists in the model's class order (FairFace's own order for
    race7/race4, gender and the nine age groups)."""
    n = len(next(iter(outputs.values())))
    columns: dict[str, list] = {c: [None] * n for c in FAIRFACE_COLUMNS[1:]}
    for task in model.tasks:
        out = outputs[task.name]
        if task.kind == "regression":
            if task.name == "age" and not any(t.name == "age_group" for t in model.tasks):
                columns["age_fair"] = [L.age_to_group(float(v)) for v in out]
            continue
        labels = [task.classes[i] for i in out.argmax(1)]
        scores = [_scores_text(p) for p in out]
        key = {"race": "race", "gender": "gender", "age_group": "age"}.get(task.name)
        if key is None:
            continue
        columns[FAIRFACE_LABELS[key]], columns[f"{key}_scores_fair"] = labels, scores
        if task.name == "race":
            scheme = next((s for s, classes in L.RACE_SCHEMES.items() if tuple(classes) == tuple(task.classes)), None)
            if scheme is None:  # a custom race vocabulary: no known race4 mapping
                continue
            race4 = _race4(out.astype(np.float64), scheme)
            columns["race4_fair"] = [L.RACE_SCHEMES["race4"][i] for i in race4.argmax(1)]
            columns["race_scores_fair_4"] = [_scores_text(p) for p in race4]
    return columns


@dataclass
class _Pending:
    """Faces waiting for a batch: their records and chips at the model's input size."""

    records: list[dict] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)


def _run_batch(model: MultiTaskModel, pending: _Pending, device: torch.device, tta: bool, bf16: bool) -> pd.DataFrame:
    images = np.stack(pending.images)
    outputs, _ = predict_batches(model, _ChipBatch(images), len(images), device, tta=tta, bf16=bf16)
    frame = pd.DataFrame(pending.records)
    ours = pd.DataFrame(prediction_columns(model.tasks, outputs))
    theirs = pd.DataFrame(fairface_columns(model, outputs))
    return pd.concat([frame, theirs, ours], axis=1)


def _photo_stream(photo_paths: Sequence[str], detector, config: AlignConfig, workers: int) -> Iterator[PhotoFaces]:
    if isinstance(detector, str):
        detector = DetectorConfig(backend=detector)
    if isinstance(detector, DetectorConfig):
        return iter_photos(photo_paths, detector, config, workers=workers)
    # An already built detector runs here, in this process.
    return iter_photos(photo_paths, detector.config, config, workers=1, detector=detector)


def predict_photos_detailed(model: MultiTaskModel, photo_paths: Sequence[str],
                            detector: Detector | DetectorConfig | str,
                            *, device: torch.device = torch.device("cpu"), batch_size: int = 64, min_face: int = 0,
                            max_side: int = 800, chip_size: int = 224, padding: float = 0.25,
                            tta: bool = TTA_DEFAULT, bf16: bool = False, workers: int = 1,
                            chip_dir: Optional[str | Path] = None, progress: bool = True
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`predict_photos`, but the second value is a table of skipped photos with the
    reason (``no face``, ``no face: N smaller than min_face``, ``unreadable: ...``)."""
    config = AlignConfig(size=chip_size, padding=padding, max_side=max_side, min_face=min_face)
    size = model.config.resolved_size()
    chip_root = Path(chip_dir) if chip_dir is not None else None
    pending, parts, skipped = _Pending(), [], []
    model = model.to(device)
    bar = tqdm(total=len(photo_paths), desc="predict photos", unit="photo", disable=not progress)
    for photo in _photo_stream(list(photo_paths), detector, config, workers):
        bar.update(1)
        if photo.error or not photo.faces:
            reason = photo.error or ("no face" + (f": {photo.small} smaller than min_face={min_face}"
                                                  if photo.small else ""))
            skipped.append({"path": photo.path, "reason": reason})
            continue
        for index, (face, chip) in enumerate(zip(photo.faces, photo.chips)):
            name = f"{photo.path}#face{index}"
            if chip_root is not None:
                name = str(chip_root / chip_name(photo.path, None, index))
                Path(name).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(chip).save(name, quality=95)
            pending.records.append({"path": photo.path, "face_index": index, "faces_in_photo": len(photo.faces),
                                    **face_record(face), "face_name_align": name})
            pending.images.append(resize_chip(chip, size))
        if len(pending.images) >= batch_size:
            parts.append(_run_batch(model, pending, device, tta, bf16))
            pending = _Pending()
        bar.set_postfix(faces=sum(len(p) for p in parts) + len(pending.images), no_face=len(skipped))
    if pending.images:
        parts.append(_run_batch(model, pending, device, tta, bf16))
    bar.close()
    faces = pd.concat(parts, ignore_index=True) if parts else _empty_faces(model)
    return faces, pd.DataFrame(skipped, columns=["path", "reason"])


def _empty_faces(model: MultiTaskModel) -> pd.DataFrame:
    outputs = {t.name: np.zeros((0, t.num_classes) if t.kind == "classification" else (0,), dtype=np.float32)
               for t in model.tasks}
    columns = ["path", "face_index", "faces_in_photo", "box_x0", "box_y0", "box_x1", "box_y1", "det_score",
               *[f"lm{i}_{a}" for i in range(5) for a in ("x", "y")], "landmark_scheme", *FAIRFACE_COLUMNS,
               *prediction_columns(model.tasks, outputs)]
    return pd.DataFrame(columns=columns)


def predict_photos(model: MultiTaskModel, photo_paths: Sequence[str], detector: Detector | DetectorConfig | str, *,
                   device: torch.device = torch.device("cpu"), batch_size: int = 64, min_face: int = 0,
                   max_side: int = 800, **options) -> tuple[pd.DataFrame, list[str]]:
    """Detect and align every face in each photo and run ``model`` on the chips in batches.

    Returns one row per face — ``path`` (the photo), ``face_index``, ``box_x0..box_y1`` (photo
    pixels), ``det_score``, landmarks, per task ``T_pred``/``T_prob_<class>``/``age_pred`` and
    FairFace's columns — and the photos where no face was found (or that could not be read; the
    reasons are logged).  ``detector``: a built :class:`Detector`, a :class:`DetectorConfig`
    or a backend name; ``options``: ``chip_size``, ``padding``, ``tta``, ``bf16``, ``workers``,
    ``chip_dir``, ``progress`` (see :func:`predict_photos_detailed`)."""
    faces, skipped = predict_photos_detailed(model, photo_paths, detector, device=device, batch_size=batch_size,
                                             min_face=min_face, max_side=max_side, **options)
    for row in skipped.itertuples():
        if row.reason.startswith("unreadable"):
            log.warning("%s: %s", row.path, row.reason)
    return faces, skipped["path"].tolist()
