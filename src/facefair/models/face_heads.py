"""Face heads: small classifiers on dlib's face descriptors that a model's own heads defer to.

An ImageNet-initialised CNN fine-tuned on UTKFace reads capture quality as race and fails whole
groups of other people's faces (docs/transfer.md).  Heads fitted on a face-recognition network's
descriptors (:mod:`facefair.models.face_features`) key on the face instead.  A model carries them
beside its weights; for each task they cover, inference outputs
``weight x face head + (1 - weight) x CNN`` (``weight`` 1: the face head alone), so every command
and the Python API give the same answer.

The heads are plain arrays (a standardiser, then dense layers with ReLU between them and a softmax
for a classification task) stored with safetensors: loading them runs no code, whoever wrote the
file.  No torch here.

>>> import numpy as np
>>> head = Head("gender", ["Male", "Female"], np.zeros(2), np.ones(2),
...             [(np.array([[0.0, 4.0], [0.0, 0.0]]), np.zeros(2))], weight=1.0)
>>> head.predict(np.array([[1.0, 0.0], [-1.0, 0.0]])).round(3).tolist()
[[0.018, 0.982], [0.982, 0.018]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from facefair.models.face_features import CACHE_VERSION, DIMENSIONS

FORMAT = "facefair-face-heads"
FORMAT_VERSION = 1


class FaceHeadsError(ValueError):
    """A face-heads file that cannot be used with this model (named in the message)."""


@dataclass
class Head:
    """One task's head: ``classes`` (the model's class order; empty for exact age), the
    standardiser ``mean``/``scale``, dense ``layers`` [(W, b), ...] and the blend ``weight``."""

    task: str
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    weight: float = 1.0
    chosen: str = ""          # which candidate validation chose (e.g. "logistic C=0.03")

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1:
            raise FaceHeadsError(f"face head {self.task}: weight must be in (0, 1], got {self.weight}")
        width = len(self.mean)
        for k, (w, b) in enumerate(self.layers):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise FaceHeadsError(f"face head {self.task}: layer {k} has shape {w.shape}/{b.shape}, "
                                     f"expected ({width}, n)/(n,)")
            width = w.shape[1]
        expected = len(self.classes) if self.classes else 1
        if width != expected:
            raise FaceHeadsError(f"face head {self.task}: {width} outputs for {expected} classes")

    @property
    def is_classifier(self) -> bool:
        return bool(self.classes)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for a classification task, years (N,) for exact age."""
        x = (np.asarray(vectors, dtype=np.float64) - self.mean) / self.scale
        for k, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if k < len(self.layers) - 1:
                x = np.maximum(x, 0)
        if not self.is_classifier:
            return x[:, 0]
        x = x - x.max(axis=1, keepdims=True)
        e = np.exp(x)
        return e / e.sum(axis=1, keepdims=True)


def head_from_sklearn(task, pipeline, present: np.ndarray, weight: float = 1.0, chosen: str = "") -> Head:
    """A :class:`Head` from a fitted ``StandardScaler`` + ``LogisticRegression``/``MLPClassifier``/
    ``Ridge`` pipeline; ``present`` maps its class indices onto ``task.classes`` (a class the
    training rows lacked gets probability 0)."""
    scaler, model = pipeline[0], pipeline[-1]
    mean, scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
    if hasattr(model, "coefs_"):  # MLPClassifier
        layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in zip(model.coefs_, model.intercepts_)]
    else:
        coef = np.atleast_2d(model.coef_).astype(np.float64)
        layers = [(coef.T, np.atleast_1d(model.intercept_).astype(np.float64))]
    if task.kind == "regression":
        return Head(task.name, [], mean, scale, layers, weight, chosen)
    w, b = layers[-1]
    if w.shape[1] == 1:  # binary: one logit for the second class; softmax([0, z]) is its sigmoid
        w, b = np.hstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    # Scatter onto the task's full class list; absent classes get a logit no exp() reaches.
    full_w = np.zeros((w.shape[0], task.num_classes))
    full_b = np.full(task.num_classes, -1e9)
    full_w[:, present], full_b[present] = w, b
    layers[-1] = (full_w, full_b)
    return Head(task.name, list(task.classes), mean, scale, layers, weight, chosen)


@dataclass
class FaceHeads:
    """The heads a model defers to, by task, and the descriptor they were fitted on."""

    heads: dict[str, Head]
    feature: str = CACHE_VERSION
    info: dict = field(default_factory=dict)

    def outputs(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Each head's output; rows without a descriptor (NaN) stay NaN."""
        readable = ~np.isnan(vectors).any(axis=1)
        result = {}
        for name, head in self.heads.items():
            shape = (len(vectors), len(head.classes)) if head.is_classifier else (len(vectors),)
            out = np.full(shape, np.nan, dtype=np.float32)
            if readable.any():
                out[readable] = head.predict(vectors[readable])
            result[name] = out
        return result

    def blend(self, outputs: dict[str, np.ndarray], vectors: np.ndarray) -> dict[str, np.ndarray]:
        """``outputs`` (the CNN's, per task) with each covered task replaced by
        ``weight x head + (1 - weight) x CNN``; rows the CNN has no output for, or without a
        descriptor, keep the CNN's value."""
        mine = self.outputs(vectors)
        blended = dict(outputs)
        for name, head in self.heads.items():
            if name not in outputs:
                continue
            cnn = np.asarray(outputs[name], dtype=np.float32)
            usable = ~np.isnan(mine[name]).reshape(len(cnn), -1).any(axis=1) & \
                ~np.isnan(cnn).reshape(len(cnn), -1).any(axis=1)
            out = cnn.copy()
            out[usable] = head.weight * mine[name][usable] + (1 - head.weight) * cnn[usable]
            blended[name] = out
        return blended

    def describe(self) -> str:
        return ", ".join(f"{n} ({h.chosen or 'fitted'}, weight {h.weight:g})" for n, h in self.heads.items())

    # -- file ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        tensors, heads = {}, {}
        for name, head in self.heads.items():
            tensors[f"{name}.mean"], tensors[f"{name}.scale"] = head.mean, head.scale
            for k, (w, b) in enumerate(head.layers):
                tensors[f"{name}.w{k}"], tensors[f"{name}.b{k}"] = w, b
            heads[name] = {"classes": head.classes, "layers": len(head.layers), "weight": head.weight,
                           "chosen": head.chosen}
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "feature": self.feature,
                "heads": json.dumps(heads), "info": json.dumps(self.info)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, tasks: Optional[Sequence] = None) -> "FaceHeads":
        """Read a file :meth:`save` wrote (arrays only), checked against the model's ``tasks``
        (each head's task must exist with the same classes)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="np") as handle:
                meta = handle.metadata() or {}
                arrays = {key: handle.get_tensor(key) for key in handle.keys()}
            if meta.get("format") != FORMAT:
                raise FaceHeadsError(f"{path}: not a face-heads file (format {meta.get('format')!r})")
            if int(meta.get("format_version", 0)) > FORMAT_VERSION:
                raise FaceHeadsError(f"{path}: written by a newer facefair (format {meta['format_version']}); "
                                     f"upgrade facefair to read it")
            described = json.loads(meta["heads"])
            heads = {}
            for name, spec in described.items():
                layers = [(arrays[f"{name}.w{k}"], arrays[f"{name}.b{k}"]) for k in range(int(spec["layers"]))]
                heads[name] = Head(name, list(spec["classes"]), arrays[f"{name}.mean"], arrays[f"{name}.scale"],
                                   layers, float(spec["weight"]), str(spec.get("chosen", "")))
            info = json.loads(meta.get("info", "{}"))
        except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as error:
            raise FaceHeadsError(f"{path}: unreadable face-heads file ({error}); delete it to use the CNN "
                                 f"alone, or fit it again with `facefair face-heads RUN`") from None
        feature = meta.get("feature", "")
        if feature != CACHE_VERSION:
            raise FaceHeadsError(f"{path}: fitted on descriptor {feature!r}, this facefair computes "
                                 f"{CACHE_VERSION!r}; fit the heads again with `facefair face-heads RUN`")
        for name, head in heads.items():
            if len(head.mean) != DIMENSIONS:
                raise FaceHeadsError(f"{path}: head {name} takes {len(head.mean)} numbers, descriptors have "
                                     f"{DIMENSIONS}")
        if tasks is not None:
            by_name = {t.name: t for t in tasks}
            for name, head in heads.items():
                task = by_name.get(name)
                if task is None:
                    raise FaceHeadsError(f"{path}: head {name!r} is not one of the model's tasks "
                                         f"({', '.join(by_name)})")
                expected = list(task.classes) if task.kind == "classification" else []
                if head.classes != expected:
                    raise FaceHeadsError(f"{path}: head {name!r} has classes {head.classes}, the model "
                                         f"{expected}")
        return cls(heads, feature, info)
