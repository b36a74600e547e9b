"""Predict on raw photos: every face found is aligned FairFace's way and classified.

Detection and chips are :mod:`facefair.align`'s (the photo is shrunk to ``max_side``, faces found,
chips cut from those pixels); each chip is then resized to the model's input exactly as an image
file would be (:func:`facefair.data.images.resize_face`) and predicted in batches across photos,
so many small photos still fill a batch.  ``facefair predict --detect``, ``evaluate --detect`` and
``serve --detect`` all come through here.  Output: one row per face with its box, our columns
(``T_pred``, ``T_prob_<class>``, ``age_pred``) and the columns FairFace's predict.py writes, its
predicted labels renamed ``race_fair``, ``race4_fair``, ``gender_fair``, ``age_fair`` (FairFace calls
them ``race``, ``gender``, ``age``: the names under which the predictions table holds *true* labels,
which the audit would read as such), and its ``*_scores_fair`` lists.
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
from facefair.align.detectors import Detector, DetectorConfig, MissingBackend, make_detector, resolve_backend
from facefair.align.pipeline import AlignConfig, PhotoFaces, chip_name, face_record, find_faces, iter_photos
from facefair.data.images import resize_face, small_face_note
from facefair.table import prediction_columns
from facefair.inference.engine import predict_arrays
from facefair.inference.settings import DEFAULTS, InferenceSettings

log = logging.getLogger(__name__)

#: FairFace predict.py's label columns -> ours: predicted labels never take a true label's column name.
FAIRFACE_LABELS = {"race": "race_fair", "race4": "race4_fair", "gender": "gender_fair", "age": "age_fair"}
FAIRFACE_COLUMNS = ["face_name_align", *FAIRFACE_LABELS.values(), "race_scores_fair", "race_scores_fair_4",
                    "gender_scores_fair", "age_scores_fair"]


def detector_config(backend: str, device: str | torch.device = "cpu",
                    settings: InferenceSettings = DEFAULTS) -> DetectorConfig:
    """The detector for ``backend`` (``auto`` resolved) with the settings' knobs; MTCNN is torch
    and runs on the model's device, the dlib backends on the CPU."""
    backend = resolve_backend(backend)
    device_type = torch.device(device).type
    return DetectorConfig(backend=backend, upsample=settings.upsample, threshold=settings.threshold,
                          model_dir=settings.model_dir, device=device_type if backend == "mtcnn" else "cpu")


def build_detector(spec: "str | DetectorConfig", device: str | torch.device = "cpu",
                   settings: InferenceSettings = DEFAULTS) -> Detector:
    """A built detector, or a ``ValueError`` that names the backend and the pip command that installs it."""
    config = spec if isinstance(spec, DetectorConfig) else detector_config(spec, device, settings)
    try:
        return make_detector(config)
    except MissingBackend as error:
        raise ValueError(f"--detect {config.backend}: {error}") from None


def chip_padding_for(model, settings: InferenceSettings = DEFAULTS) -> float:
    """The settings' padding, else the one measured on the model's training chips, else FairFace's 0.25."""
    from facefair.align.framing import chip_padding
    return settings.padding if settings.padding is not None else chip_padding(getattr(model, "framing", None))


def align_config(model, settings: InferenceSettings = DEFAULTS) -> AlignConfig:
    """How photos are shrunk, faces kept and chips cut for ``model``: one rule for every command."""
    return AlignConfig(size=settings.chip_size, padding=chip_padding_for(model, settings),
                       max_side=settings.max_side, min_face=settings.min_face)


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


def fairface_columns(model, outputs: dict[str, np.ndarray]) -> dict[str, list]:
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


def _run_batch(model, pending: _Pending, settings: InferenceSettings) -> pd.DataFrame:
    outputs = predict_arrays(model, np.stack(pending.images), settings)
    frame = pd.DataFrame(pending.records)
    ours = pd.DataFrame(prediction_columns(model.tasks, outputs))
    theirs = pd.DataFrame(fairface_columns(model, outputs))
    return pd.concat([frame, theirs, ours], axis=1)


def _photo_stream(photo_paths: Sequence[str], detector, config: AlignConfig, workers: int) -> Iterator[PhotoFaces]:
    if isinstance(detector, str):
        detector = detector_config(detector)
    if isinstance(detector, DetectorConfig):
        return iter_photos(photo_paths, detector, config, workers=workers)
    # An already built detector runs here, in this process.
    return iter_photos(photo_paths, detector.config, config, workers=1, detector=detector)


def predict_photos_detailed(model, photo_paths: Sequence[str], detector: Detector | DetectorConfig | str,
                            settings: InferenceSettings = DEFAULTS, *, workers: int = 1,
                            chip_dir: Optional[str | Path] = None, progress: bool = True
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every face in each photo, predicted on the device ``model`` is on.

    Parameters
    ----------
    model : MultiTaskModel
        A loaded model (any registered architecture).
    photo_paths : sequence of str
        Raw photos.
    detector : Detector, DetectorConfig or str
        A built detector (runs in this process), a config or a backend name (``workers`` processes).
    settings : InferenceSettings
        ``max_side``, ``chip_size``, ``padding``, ``min_face``, ``batch_size``, ``tta``, ``bf16``;
        with ``adapt_bn`` the network's BatchNorm statistics are re-estimated over every face found
        in all the photos before any is predicted, so their chips are held in memory until then
        (about 37 KB a face at 112 px).
    chip_dir : str or Path, optional
        Also write each aligned chip there (``face_name_align`` names it).

    Returns
    -------
    faces, skipped : DataFrame
        One row per face (``path``, ``face_index``, box, landmarks, predictions, FairFace's
        columns), and one row per photo without a usable face with the ``reason`` (``no face``,
        ``no face: N smaller than min_face``, ``unreadable: ...``).
    """
    config = align_config(model, settings)
    size = model.config.resolved_size()
    chip_root = Path(chip_dir) if chip_dir is not None else None
    pending, parts, skipped = _Pending(), [], []
    bar = tqdm(total=len(photo_paths), desc="predict photos", unit="photo", disable=not progress)
    for photo in _photo_stream(list(photo_paths), detector, config, workers):
        bar.update(1)
        if photo.error or not photo.faces:
            reason = photo.error or ("no face" + (f": {photo.small} smaller than min_face={settings.min_face}"
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
            pending.images.append(resize_face(chip, size))
        # Adapting BatchNorm needs every face of the set before the first is predicted.
        if len(pending.images) >= settings.batch_size and not settings.adapt_bn:
            parts.append(_run_batch(model, pending, settings))
            pending = _Pending()
        bar.set_postfix(faces=sum(len(p) for p in parts) + len(pending.images), no_face=len(skipped))
    if pending.images:
        parts.append(_run_batch(model, pending, settings))
    bar.close()
    faces = pd.concat(parts, ignore_index=True) if parts else _empty_faces(model)
    # A face box this small in the photo is upscaled into the chip: predicted, and flagged.
    faces["note"] = [small_face_note(x1 - x0, y1 - y0, size) for x0, y0, x1, y1
                     in zip(faces["box_x0"], faces["box_y0"], faces["box_x1"], faces["box_y1"])]
    return faces, pd.DataFrame(skipped, columns=["path", "reason"])


def faces_in_image(model, image: np.ndarray, factor: float, detector: Detector,
                   settings: InferenceSettings = DEFAULTS, max_faces: Optional[int] = None
                   ) -> tuple[PhotoFaces, dict[str, np.ndarray]]:
    """One photo already shrunk by :func:`facefair.align.pipeline.shrink_photo` (an upload): its
    faces (original pixels) and the model's outputs per face, through the same detection, chips
    and resize as :func:`predict_photos_detailed`."""
    photo = find_faces(image, factor, detector, align_config(model, settings))
    if max_faces is not None:
        photo.faces, photo.chips = photo.faces[:max_faces], photo.chips[:max_faces]
    if not photo.faces:
        return photo, {}
    size = model.config.resolved_size()
    return photo, predict_arrays(model, np.stack([resize_face(c, size) for c in photo.chips]), settings)


def _empty_faces(model) -> pd.DataFrame:
    outputs = {t.name: np.zeros((0, t.num_classes) if t.kind == "classification" else (0,), dtype=np.float32)
               for t in model.tasks}
    columns = ["path", "face_index", "faces_in_photo", "box_x0", "box_y0", "box_x1", "box_y1", "det_score",
               *[f"lm{i}_{a}" for i in range(5) for a in ("x", "y")], "landmark_scheme", *FAIRFACE_COLUMNS,
               *prediction_columns(model.tasks, outputs)]
    return pd.DataFrame(columns=columns)


def predict_photos(model, photo_paths: Sequence[str], detector: Detector | DetectorConfig | str,
                   settings: InferenceSettings = DEFAULTS, **options) -> tuple[pd.DataFrame, list[str]]:
    """Like :func:`predict_photos_detailed`, but the second value lists the photos where no face
    was found (or that could not be read; the reasons are logged)."""
    faces, skipped = predict_photos_detailed(model, photo_paths, detector, settings, **options)
    for row in skipped.itertuples():
        if row.reason.startswith("unreadable"):
            log.warning("%s: %s", row.path, row.reason)
    return faces, skipped["path"].tolist()
