"""The model behind the API: an :class:`Upload` in, one dict per face out.

Without a detector the whole upload is one already-cropped face, preprocessed exactly as
``facefair predict`` preprocesses a file.  With one (``facefair.align``, an optional part of the
package), faces are found on a shrunk copy and aligned chips are cut from the full image."""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
import torch
from PIL import Image

from facefair.data.batches import to_float
from facefair.data.images import small_face_note
from facefair.evaluate.inference import predict_tensor
from facefair.models.multitask import MultiTaskModel
from facefair.serve.config import ServeConfig
from facefair.serve.uploads import Upload


def make_detector(backend: str, device: str = "cpu"):
    """A :mod:`facefair.align` detector, or a clear error when that part or its backend is missing."""
    try:
        from facefair.align.detectors import DetectorConfig, MissingBackend
        from facefair.align.detectors import make_detector as build
    except ImportError as error:
        raise ValueError(f"--detect {backend} needs facefair.align (face detection), which cannot be imported "
                         f"({error}); serve already-cropped faces with --detect none") from error
    try:
        return build(DetectorConfig(backend=backend, device=device))
    except MissingBackend as error:
        raise ValueError(f"--detect {backend}: {error}") from error


def resize_face(image: Image.Image, size: int) -> np.ndarray:
    """Same resize as :func:`facefair.data.images.decode` (which needs a path, not an image)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays


class Predictor:
    def __init__(self, model: MultiTaskModel, config: ServeConfig, detector=None):
        self.model, self.config, self.detector = model.eval(), config, detector
        self.device = next(model.parameters()).device
        self.size = model.config.resolved_size()
        from facefair.align.framing import chip_padding
        # Chips cut as the training chips were (measured at training), unless the config says otherwise.
        self.padding = config.padding if config.padding is not None else chip_padding(getattr(model, "framing", None))
        # One request at a time on the model: torch already uses every core per call, and
        # concurrent calls would only thrash them (and GPU memory).
        self._lock = threading.Lock()

    @property
    def draft_size(self) -> Optional[int]:
        """Whole-image mode may let libjpeg decode small; detection needs full resolution."""
        return self.size if self.detector is None else None

    def describe(self) -> dict:
        detect = self.config.detect
        if self.detector is not None and detect == "none":  # a detector object handed to create_app
            detect = type(self.detector).__name__
        return {"backbone": self.model.config.backbone, "input_size": self.size,
                "tasks": [t.to_dict() for t in self.model.tasks], "detect": detect,
                "tta": self.config.tta, "padding": self.padding}

    def faces(self, upload: Upload) -> list[dict]:
        if self.detector is None:
            chips = resize_face(upload.image, self.size)[None]
            boxes, scores = [(0.0, 0.0, float(upload.width), float(upload.height))], [None]
        else:
            chips, boxes, scores = self._detect(upload)
            if not len(chips):
                return []
        outputs = self.predict_chips(chips)
        return [self._face(i, boxes[i], scores[i], outputs) for i in range(len(boxes))]

    def _detect(self, upload: Upload):
        from facefair.align.chips import align_faces  # importable: make_detector succeeded
        image = np.asarray(upload.image)
        scale = min(1.0, self.config.detect_side / max(upload.image.size))
        small = upload.image if scale == 1.0 else upload.image.resize(
            (max(1, round(upload.image.width * scale)), max(1, round(upload.image.height * scale))),
            Image.BILINEAR, reducing_gap=2.0)
        found = self.detector.detect(np.asarray(small))[: self.config.max_faces]
        found = [face.scaled(1 / scale) for face in found] if scale != 1.0 else found
        chips = align_faces(image, found, size=self.size, padding=self.padding)
        return (np.stack(chips) if chips else np.empty((0, self.size, self.size, 3), np.uint8),
                [tuple(float(v) for v in f.box) for f in found], [float(f.score) for f in found])

    def predict_chips(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 NHWC faces at the model size -> probabilities / years per task."""
        with self._lock, torch.inference_mode():
            x = to_float(torch.from_numpy(np.ascontiguousarray(chips)), self.device)
            predicted = predict_tensor(self.model, x, self.config.tta)
            return {k: v.float().cpu().numpy() for k, v in predicted.items()}

    def _face(self, i: int, box, score, outputs: dict[str, np.ndarray]) -> dict:
        face: dict = {"box": [round(v, 1) for v in box], "predictions": {}}
        if score is not None:
            face["score"] = round(score, 4)
        note = small_face_note(box[2] - box[0], box[3] - box[1], self.size)
        if note is not None:  # predicted all the same, but a 1x1 upload must not look like a face
            face["warning"] = note
        for task in self.model.tasks:
            value = outputs[task.name][i]
            if task.kind == "regression":
                face[task.name] = float(value)
            else:
                face["predictions"][task.name] = {
                    "label": task.classes[int(value.argmax())],
                    "probs": {c: float(p) for c, p in zip(task.classes, value)}}
        return face
