"""Image embeddings for the data checks: an ImageNet backbone (or a trained facefair model) run
once over the decoded-image cache, pooled features averaged over the image and its mirror; or
dlib's face descriptors (``extractor="dlib-face"``).

A linear model on these features is what scores labels out of fold, and their cosine similarity
is one of the duplicate signals; computing them once serves both.

dlib's ResNet descriptors (128-d, trained to tell people apart on faces, shipped with
``face-recognition-models``) never saw UTKFace's labels and carry face attributes far better than
ImageNet features: on the synthetic check (benchmarks/label_noise.py) a linear model on them finds
~0.8 of flipped gender labels in its top k against ~0.58 on ImageNet features.  They need dlib
(the ``align`` extra) and ~0.1 s per face on one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from facefair.run import Run


@dataclass(frozen=True)
class FeatureConfig:
    weights: str = "local:mobilenet_v2"  # ImageNet backbone weights (a path or local:NAME)
    backbone: str = "mobilenetv2"        # the architecture the weights fit
    model: Optional[str] = None          # a trained facefair checkpoint (RUN/best.pt): its backbone instead
    size: int = 0                        # pixels; 0: the --model's own, else 112 (the recipe's cache)
    batch_size: int = 128
    cache_dir: str = ".facefair-cache"
    device: str = "cpu"
    workers: int = 0                     # decode workers for the cache (0: one per core)
    mirror: bool = False                 # average with the mirrored image (2x the time)
    extractor: str = "imagenet"          # "imagenet" (the backbone above) or "dlib-face" (dlib's face descriptors)

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"unknown feature extractor {self.extractor!r}: {', '.join(EXTRACTORS)}")
        if self.extractor == "dlib-face" and self.model:
            raise ValueError("--model gives its own features: leave --features at imagenet")


EXTRACTORS = ("imagenet", "dlib-face")
#: dlib's face chips are 150 px: decode at that size for its descriptors.
DLIB_FACE_SIZE = 150


@dataclass
class Embedded:
    """Features and the decoded pixels of the images that could be read."""
    paths: list[str]                 # every input path, in input order
    features: np.ndarray             # (n_readable, dim) float32, L2-normalised
    rows: np.ndarray                 # index into ``paths`` of each features row
    images: np.ndarray               # the cache's uint8 array (memory-mapped)
    image_index: np.ndarray          # cache row of each features row
    bad: dict[str, str]              # path -> why it could not be decoded
    source: str                      # what made the features (for the report)
    size: int = 0                    # pixels the features were computed at


def _model_size(config: FeatureConfig) -> int:
    if config.extractor == "dlib-face":
        return DLIB_FACE_SIZE
    if not config.model:
        return 112
    from facefair.models.serialization import read_checkpoint  # noqa: PLC0415

    return int(read_checkpoint(config.model, "cpu")["model"].get("image_size") or 224)


def _describe(config: FeatureConfig) -> str:
    if config.extractor == "dlib-face":
        return "dlib face descriptors (dlib_face_recognition_resnet_model_v1)"
    return f"backbone of {config.model}" if config.model else f"ImageNet {config.backbone} ({config.weights})"


def _feature_key(config: FeatureConfig) -> str:
    """Names the network (and its file's size and time) so a retrained model never reuses features."""
    import hashlib  # noqa: PLC0415
    import os  # noqa: PLC0415

    from facefair.models.backbones import resolve_weights  # noqa: PLC0415

    if config.extractor == "dlib-face":
        from facefair.align.detectors import dlib_model_path  # noqa: PLC0415
        weight_file = dlib_model_path(DLIB_DESCRIPTOR)
        stat = os.stat(weight_file)
        return hashlib.sha256(f"dlib-face|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    weight_file = resolve_weights(config.model or config.weights)
    if weight_file.is_dir():  # a run or export folder: its weights file is what changes
        folder = Run(weight_file)
        weight_file = next((p for p in (folder.weights_path, folder.legacy_best_path) if p.exists()), weight_file)
    stat = os.stat(weight_file)
    text = f"{config.model}|{config.backbone}|{weight_file}|{stat.st_size}|{stat.st_mtime_ns}|{config.mirror}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _feature_network(config: FeatureConfig, device):
    if config.model:
        from facefair.models.multitask import load_model  # noqa: PLC0415

        return load_model(config.model, map_location="cpu").to(device).forward_features
    from facefair.models.backbones import create_backbone  # noqa: PLC0415

    return create_backbone(config.backbone, weights=config.weights).eval().to(device)


DLIB_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
_DLIB: dict = {}  # per worker process: the landmark and descriptor networks, built once


def _dlib_networks() -> tuple:
    if not _DLIB:
        from facefair.align.detectors import _import_dlib, dlib_model_path  # noqa: PLC0415
        dlib = _import_dlib()
        _DLIB.update(dlib=dlib,
                     landmarks=dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat"))),
                     descriptor=dlib.face_recognition_model_v1(str(dlib_model_path(DLIB_DESCRIPTOR))))
    return _DLIB["dlib"], _DLIB["landmarks"], _DLIB["descriptor"]


def _dlib_describe(images: np.ndarray) -> np.ndarray:
    """Descriptors of dataset chips: the chip is the face (its box is the central 92%, what dlib's
    detector finds on UTKFace's chips), so no detection is run; landmarks then align it."""
    dlib, landmarks, descriptor = _dlib_networks()
    out = np.zeros((len(images), 128), np.float32)
    for i, image in enumerate(images):
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        margin_x, margin_y = int(0.04 * width), int(0.04 * height)
        shape = landmarks(image, dlib.rectangle(margin_x, margin_y, width - margin_x, height - margin_y))
        out[i] = np.asarray(descriptor.compute_face_descriptor(image, shape, 0), np.float32)
    return out


def _dlib_chunk(rows: np.ndarray) -> np.ndarray:
    return _dlib_describe(_DLIB["images"][rows])


def _dlib_features(images: np.ndarray, picked: np.ndarray, workers: int, progress: bool) -> np.ndarray:
    """dlib descriptors of ``images[picked]``, over ``workers`` forked processes (dlib is one core each)."""
    import multiprocessing  # noqa: PLC0415

    chunks = np.array_split(picked, max(1, len(picked) // 64))
    bar = tqdm(total=len(picked), desc="dlib face descriptors", unit="img", disable=not progress)
    _DLIB["images"] = images
    results = []
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods() and len(picked) > 256:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for chunk, result in zip(chunks, pool.imap(_dlib_chunk, chunks)):
                    results.append(result)
                    bar.update(len(chunk))
        else:
            for chunk in chunks:
                results.append(_dlib_chunk(chunk))
                bar.update(len(chunk))
    finally:
        _DLIB.pop("images", None)
        bar.close()
    return np.concatenate(results) if results else np.zeros((0, 128), np.float32)


def embed(paths: Sequence[str], config: FeatureConfig = FeatureConfig(), *, progress: bool = True) -> Embedded:
    """Decode (through the shared cache) and embed every image; unreadable ones are left out and named."""
    import os  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from facefair.data.batches import to_float  # noqa: PLC0415
    from facefair.data.cache import build_cache  # noqa: PLC0415

    paths = list(paths)
    size = config.size or _model_size(config)
    cache = build_cache(paths, size, config.cache_dir, workers=config.workers or (os.cpu_count() or 1),
                        progress=progress)
    index = cache.indices(paths)
    rows = np.flatnonzero(index >= 0)
    stored = cache.directory / f"features-{_feature_key(config)}.npy"
    if stored.exists():  # the whole cache was embedded before with this network: reuse it
        every = np.load(stored, mmap_mode="r")
        bad = {p: cache.bad[p] for p in np.asarray(paths, dtype=object)[index < 0]}
        return Embedded(paths, np.asarray(every[index[rows]], dtype=np.float32), rows, cache.images, index[rows],
                        bad, _describe(config), size)
    if config.extractor == "dlib-face":
        _dlib_networks()  # fail here, with the install line, before any work
        features = _dlib_features(cache.images, index[rows], config.workers or (os.cpu_count() or 1), progress)
        return _finish(paths, features, rows, cache, index, stored, config, size)
    device = torch.device(config.device)
    network = _feature_network(config, device)
    chunks = []
    bar = tqdm(total=len(rows), desc="embedding", unit="img", disable=not progress)
    with torch.inference_mode():
        for start in range(0, len(rows), config.batch_size):
            picked = index[rows[start:start + config.batch_size]]
            order = np.argsort(picked)  # memory-map reads in file order
            batch = torch.from_numpy(np.ascontiguousarray(cache.images[picked[order]]))
            x = to_float(batch, device)
            out = network(x).float()
            if config.mirror:  # the mirror is as much the same face; averaging steadies turned heads
                out = (out + network(torch.flip(x, dims=[3])).float()) / 2
            restored = torch.empty_like(out)
            restored[torch.from_numpy(order)] = out
            chunks.append(restored.cpu().numpy())
            bar.update(len(picked))
    bar.close()
    features = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    return _finish(paths, features, rows, cache, index, stored, config, size)


def _finish(paths, features: np.ndarray, rows, cache, index, stored, config: FeatureConfig, size: int) -> Embedded:
    """L2-normalise, store for the whole cache when every readable image was embedded, wrap."""
    import os  # noqa: PLC0415

    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if len(rows) == len(cache.paths) - len(cache.bad) and len(rows):
        every = np.zeros((len(cache.paths), features.shape[1]), np.float32)
        every[index[rows]] = features
        staging = stored.with_name(stored.name + f".{os.getpid()}.npy")
        np.save(staging, every)
        os.replace(staging, stored)
    bad = {p: cache.bad[p] for p in np.asarray(paths, dtype=object)[index < 0]}
    return Embedded(paths, features.astype(np.float32), rows, cache.images, index[rows], bad, _describe(config),
                    size)
