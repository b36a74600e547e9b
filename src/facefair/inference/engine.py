"""Running a model over faces: probabilities (classification) and years (age) per row, with the
one flip-TTA and the one precision rule every command uses.  Faces come as batches
(:func:`predict_batches`), image files (:func:`predict_files`) or uint8 arrays
(:func:`predict_arrays`); :mod:`facefair.table` turns the outputs into the predictions table.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from facefair.data.batches import to_float
from facefair.flags import TTA_DEFAULT
from facefair.inference.settings import DEFAULTS, InferenceSettings, resolve_bf16
from facefair.runtime import autocast_context

if TYPE_CHECKING:
    import pandas as pd


def predict_tensor(model, x: torch.Tensor, tta: bool = TTA_DEFAULT) -> dict[str, torch.Tensor]:
    """Probabilities (classification) or years (age) per task for a normalised NCHW batch; with
    ``tta`` the mean over the batch and its mirror image (a mirrored face is an equally plausible
    face, and averaging removes left/right noise).  The one mirror-TTA every command uses."""
    predicted = model.predict(model(x))
    if tta:
        mirrored = model.predict(model(torch.flip(x, dims=[3])))
        predicted = {k: (v + mirrored[k]) / 2 for k, v in predicted.items()}
    return predicted


@torch.no_grad()
def predict_batches(model, batches, n_rows: int, device: torch.device, *, tta: bool = TTA_DEFAULT, amp: bool = True,
                    bf16: Optional[bool] = DEFAULTS.bf16, progress=None, rows: Optional[np.ndarray] = None,
                    adapt_bn: bool = DEFAULTS.adapt_bn) -> tuple[dict[str, np.ndarray], list[str]]:
    """Probabilities (classification) or years (age) for every row (or just ``rows``); rows whose
    image could not be read, or that were not asked for, stay NaN; read errors are returned.

    ``amp``: fp16 autocast on CUDA; ``bf16``: bfloat16 autocast on the CPU (``None``: as the model
    was trained, where the CPU computes bfloat16 natively; see :func:`resolve_bf16`).  ``adapt_bn``:
    the network's BatchNorm statistics are first re-estimated over these rows' faces
    (:mod:`facefair.inference.adapt`; ``model`` itself is not changed)."""
    model.eval()
    bf16 = resolve_bf16(bf16, model)
    if adapt_bn:
        from facefair.inference.adapt import adapt_batchnorm
        model = adapt_batchnorm(model, batches, np.arange(n_rows) if rows is None else rows, device, tta=tta,
                                autocast=autocast_context(device, amp, bf16))
    outputs = {t.name: np.full((n_rows, t.num_classes) if t.kind == "classification" else (n_rows,), np.nan,
                               dtype=np.float32) for t in model.tasks}
    errors: list[str] = []
    for images, positions, batch_errors in batches.iterate(np.arange(n_rows) if rows is None else rows):
        errors.extend(batch_errors)
        if len(positions) == 0:
            continue
        x = to_float(images, device)
        with autocast_context(device, amp, bf16):
            predicted = predict_tensor(model, x, tta)
        for name, value in predicted.items():
            outputs[name][positions] = value.float().cpu().numpy()
        if progress is not None:
            progress.update(len(positions))
    return outputs, errors


def blend_face_heads(model, outputs: dict[str, np.ndarray], *, paths: Optional[Sequence[str]] = None,
                     images: Optional[np.ndarray] = None, cache_dir: Optional[str] = None,
                     model_dir: Optional[str] = None, progress: bool = False) -> dict[str, np.ndarray]:
    """``outputs`` with the tasks the model's face heads cover blended in (unchanged for a model
    without face heads, see :mod:`facefair.models.face_heads`).  The descriptors come from the
    image files (``paths``; cached per path under ``cache_dir`` when given) or from the uint8
    NHWC faces the CNN saw (``images``); only rows the CNN has outputs for are described."""
    heads = getattr(model, "face_heads", None)
    if heads is None or not outputs:
        return outputs
    from facefair.models.face_features import DIMENSIONS, FaceEmbedder, describe_images, face_descriptors

    first = next(iter(outputs.values()))
    rows = np.flatnonzero(~np.isnan(first.reshape(len(first), -1)).any(axis=1))
    vectors = np.full((len(first), DIMENSIONS), np.nan, dtype=np.float32)
    if len(rows):
        if paths is not None:
            vectors[rows] = face_descriptors([paths[i] for i in rows], cache_dir, model_dir, progress=progress).vectors
        else:
            # dlib's networks load once per model object (a server answers many requests).
            embedder = getattr(model, "_face_embedder", None) or FaceEmbedder(model_dir)
            model._face_embedder = embedder
            vectors[rows] = describe_images(np.asarray(images)[rows], embedder).vectors
    return heads.blend(outputs, vectors)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def precision_name(model, settings: InferenceSettings = DEFAULTS, amp: bool = True) -> str:
    """What :func:`predict_batches` computes ``model`` in: ``fp16`` (CUDA autocast), ``bf16`` or ``fp32``."""
    from facefair.runtime import cpu_has_native_bf16

    device = model_device(model)
    if device.type == "cuda" and amp:
        return "fp16"
    if device.type == "cpu" and resolve_bf16(settings.bf16, model) and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def predict_arrays(model, images: np.ndarray, settings: InferenceSettings = DEFAULTS, *,
                   rows: Optional[np.ndarray] = None, progress=None) -> dict[str, np.ndarray]:
    """uint8 NHWC faces already at the model's input size -> outputs per task (rows not in ``rows``
    stay NaN).  Runs on the device the model is on."""
    from facefair.data.batches import ArrayBatches

    batches = ArrayBatches(images, np.arange(len(images)), settings.batch_size)
    outputs, _ = predict_batches(model, batches, len(images), model_device(model), tta=settings.tta,
                                 bf16=settings.bf16, rows=rows, progress=progress, adapt_bn=settings.adapt_bn)
    return blend_face_heads(model, outputs, images=images, model_dir=settings.model_dir)


def predict_files(model, paths: Sequence[str], settings: InferenceSettings = DEFAULTS, *,
                  workers: Optional[int] = None, progress: bool = True,
                  descriptor_cache: Optional[str] = None) -> "pd.DataFrame":
    """One row per image file (a cropped face): ``path``, ``T_pred`` and ``T_prob_<class>`` per
    classification task, ``age_pred`` in years; images that cannot be read get an ``error`` and no
    prediction.  ``descriptor_cache``: where a model with face heads caches the files' descriptors."""
    import pandas as pd
    from tqdm.auto import tqdm

    from facefair.data.batches import FileBatches
    from facefair.table import prediction_columns

    paths = list(paths)
    device = model_device(model)
    size = model.config.resolved_size()
    if workers is None:
        # On a CPU torch already keeps every core busy, and decode workers only compete with it
        # (measured: 413 img/s with none vs 379 with two on 2 cores); a GPU leaves the cores free.
        workers = (os.cpu_count() or 1) if device.type == "cuda" else 0
    batches = FileBatches(paths, size, settings.batch_size, workers=workers, pin_memory=device.type == "cuda")
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    model = model.to(memory_format=torch.channels_last)  # batches arrive channels-last
    outputs, errors = predict_batches(model, batches, len(paths), device, tta=settings.tta, bf16=settings.bf16,
                                      progress=bar, adapt_bn=settings.adapt_bn)
    bar.close()
    outputs = blend_face_heads(model, outputs, paths=paths, cache_dir=descriptor_cache, model_dir=settings.model_dir,
                               progress=progress)
    frame = pd.DataFrame({"path": paths, **prediction_columns(model.tasks, outputs)})
    by_path = {e.split(": ", 1)[0]: e.split(": ", 1)[-1] for e in errors}
    frame["error"] = frame["path"].map(by_path)
    frame["note"] = [_size_note(path, size) if pd.isna(error) else None
                     for path, error in zip(frame["path"], frame["error"])]
    return frame


def _size_note(path: str, model_size: int) -> Optional[str]:
    """A note when the image is far smaller than the model's input (upscaled: mostly guesswork)."""
    from facefair.data.images import image_size, small_face_note
    found = image_size(path)
    return small_face_note(*found, model_size) if found else None
