"""The model behind the API: an :class:`Upload` in, one dict per face out.

Everything that decides the numbers is :mod:`facefair.inference`'s, shared with ``facefair
predict`` and the Python API: without a detector the whole upload is one already-cropped face,
resized exactly as an image file is; with one, the photo is shrunk to ``max_side``, faces are
found and chips cut as ``predict --detect`` does (:func:`facefair.inference.photos.faces_in_image`)."""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
import torch

from facefair.data.images import resize_face, small_face_note
from facefair.inference.engine import predict_arrays
from facefair.models.multitask import MultiTaskModel
from facefair.serve.config import ServeConfig
from facefair.serve.uploads import Upload


class Predictor:
    def __init__(self, model: MultiTaskModel, config: ServeConfig, detector=None):
        from facefair.inference.photos import chip_padding_for

        self.model, self.config, self.detector = model.eval(), config, detector
        self.settings = config.settings()
        self.size = model.config.resolved_size()
        # Chips cut as the training chips were (measured at training), unless the config says otherwise.
        self.padding = chip_padding_for(model, self.settings)
        # One request at a time on the model: torch already uses every core per call, and
        # concurrent calls would only thrash them (and GPU memory).
        self._lock = threading.Lock()

    @property
    def draft_size(self) -> Optional[int]:
        """The side libjpeg may decode down to, as :func:`facefair.data.images.decode` (a face) and
        :func:`facefair.align.pipeline.load_photo` (a photo, shrunk to ``max_side``) let it."""
        if self.detector is None:
            return self.size
        return self.settings.max_side or None

    def describe(self) -> dict:
        detect = self.config.detect
        if self.detector is not None and detect == "none":  # a detector object handed to create_app
            detect = type(self.detector).__name__
        return {"backbone": self.model.config.backbone, "input_size": self.size,
                "tasks": [t.to_dict() for t in self.model.tasks], "detect": detect,
                "tta": self.settings.tta, "padding": self.padding, "max_side": self.settings.max_side,
                "chip_size": self.settings.chip_size}

    def faces(self, upload: Upload) -> list[dict]:
        with self._lock, torch.inference_mode():
            if self.detector is None:
                outputs = predict_arrays(self.model, resize_face(upload.image, self.size)[None], self.settings)
                boxes, scores = [(0.0, 0.0, float(upload.width), float(upload.height))], [None]
            else:
                from facefair.align.pipeline import shrink_photo
                from facefair.inference.photos import faces_in_image

                pixels, factor = shrink_photo(upload.image, upload.width, upload.height, self.settings.max_side)
                photo, outputs = faces_in_image(self.model, pixels, factor, self.detector, self.settings,
                                                max_faces=self.config.max_faces)
                boxes = [tuple(float(v) for v in f.box) for f in photo.faces]
                scores = [float(f.score) for f in photo.faces]
        return [self._face(i, boxes[i], scores[i], outputs) for i in range(len(boxes))]

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
