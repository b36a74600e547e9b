"""Face-pretrained features: dlib's face-recognition ResNet describes a face in 128 numbers.

The network (CC0, shipped by ``face-recognition-models``) was trained to tell people apart across
photos of every quality, so its descriptor keeps what a face looks like and drops much of how it
was photographed: the feature source of the face heads (:mod:`facefair.models.face_heads`) and of
``facefair face-baseline``.

Chips follow dlib's own recipe: the largest frontal (HOG) face, or the central 76% of an aligned
crop when none is found; its 5 landmarks; a 150 px chip with padding 0.25.  Descriptors of image
files can be cached per path (``CACHE_VERSION`` names the recipe), so refitting or scoring another
dataset only pays for images not seen before.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

CACHE_VERSION = "face-embedding-v1"
DIMENSIONS = 128
# Share of an aligned crop's side kept on each edge when no face is detected (UTKFace and
# MTCNN crops put the face in the middle).
FALLBACK_MARGIN = 0.12


def model_files(model_dir: Optional[str] = None) -> tuple[Path, Path]:
    """dlib's 5-point landmark and face-recognition model files, after checking dlib imports; a
    missing piece raises with the install step (what ``train.face_heads`` checks before its epochs)."""
    from facefair.align.detectors import _import_dlib, dlib_model_path

    _import_dlib()
    return (dlib_model_path("shape_predictor_5_face_landmarks.dat", model_dir),
            dlib_model_path("dlib_face_recognition_resnet_model_v1.dat", model_dir))


class FaceEmbedder:
    """dlib's HOG detector, 5-point landmarks and face-recognition ResNet, loaded once."""

    def __init__(self, model_dir: Optional[str] = None):
        landmarks, network = model_files(model_dir)  # first: a missing dlib gets its install step
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(landmarks))
        self.network = dlib.face_recognition_model_v1(str(network))

    def chip(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """The 150 px recognition chip of the largest face, and whether a face was detected."""
        faces = self.detector(image, 0)
        if len(faces):
            box = max(faces, key=lambda rect: rect.area())
        else:
            h, w = image.shape[:2]
            box = self.dlib.rectangle(int(w * FALLBACK_MARGIN), int(h * FALLBACK_MARGIN),
                                      int(w * (1 - FALLBACK_MARGIN)), int(h * (1 - FALLBACK_MARGIN)))
        shape = self.landmarks(image, box)
        return self.dlib.get_face_chip(image, shape, size=150, padding=0.25), bool(len(faces))

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray([np.asarray(v) for v in self.network.compute_face_descriptor(list(chips))],
                          dtype=np.float32).reshape(len(chips), DIMENSIONS)


@dataclass
class Descriptors:
    """One row per requested path; unreadable images have NaN rows and a reason in ``bad``."""

    vectors: np.ndarray                 # (N, 128) float32
    detected: np.ndarray                # (N,) bool: a frontal face was found (else the central box)
    bad: dict = field(default_factory=dict)


def _shard_folder(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / CACHE_VERSION


def _read_shards(folder: Path) -> dict[str, tuple[np.ndarray, bool]]:
    known: dict[str, tuple[np.ndarray, bool]] = {}
    for shard in sorted(folder.glob("*.npz")):
        # allow_pickle=False: a cache file cannot run code, whoever wrote it.
        with np.load(shard, allow_pickle=False) as data:
            for path, vector, found in zip(data["paths"], data["X"], data["found"]):
                known[str(path)] = (vector, bool(found))
    return known


def _key(path: str) -> str:
    return str(Path(path).resolve())


def face_descriptors(paths: Sequence[str], cache_dir: Optional[str | Path], model_dir: Optional[str] = None,
                     batch_size: int = 64, progress: bool = True, workers: Optional[int] = None) -> Descriptors:
    """Descriptors of ``paths``, computing and caching only those not cached yet.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    cache_dir : str or Path, optional
        Folder of the decoded-image cache; descriptors go in ``cache_dir/face-embedding-v1/``
        as ``.npz`` shards (``paths``, ``X``, ``found``), read with pickling off.  None: nothing
        is read or written (every image is described).
    model_dir : str, optional
        Folder with dlib's ``.dat`` files (default: the ``face-recognition-models`` package).
    batch_size : int
        Chips described per call of the network.
    workers : int, optional
        Processes describing images at once (default: one per core; dlib runs one image on one
        core, about 0.09 s each).  Each loads dlib's networks once.
    progress : bool
        Show a progress bar while describing new images.
    """
    folder = _shard_folder(cache_dir) if cache_dir else None
    known = _read_shards(folder) if folder is not None and folder.is_dir() else {}
    keys = [_key(p) for p in paths]
    missing = sorted({k for k in keys if k not in known})
    bad: dict[str, str] = {}
    if missing:
        new_paths, new_vectors, new_found = [], [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(missing), desc="face descriptors", unit="img")
        chunks = [missing[start:start + batch_size] for start in range(0, len(missing), batch_size)]
        for kept, vectors, found, chunk_bad in _describe_chunks(chunks, model_dir, workers):
            if kept:
                new_paths.extend(kept)
                new_vectors.append(vectors)
                new_found.extend(found)
            bad.update(chunk_bad)
            if bar is not None:
                bar.update(len(kept) + len(chunk_bad))
        if bar is not None:
            bar.close()
        if new_paths and folder is None:
            known.update({p: (v, f) for p, v, f in zip(new_paths, np.concatenate(new_vectors), new_found)})
        elif new_paths:
            folder.mkdir(parents=True, exist_ok=True)
            shard = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{len(known)}.npz"
            tmp = shard.with_name(shard.stem + ".tmp.npz")
            np.savez(tmp, paths=np.asarray(new_paths), X=np.concatenate(new_vectors), found=np.asarray(new_found))
            os.replace(tmp, shard)
            known.update({p: (v, f) for p, v, f in zip(new_paths, np.concatenate(new_vectors), new_found)})
    vectors = np.full((len(keys), DIMENSIONS), np.nan, dtype=np.float32)
    detected = np.zeros(len(keys), dtype=bool)
    for i, key in enumerate(keys):
        if key in known:
            vectors[i], detected[i] = known[key]
    return Descriptors(vectors, detected, {p: bad[k] for p, k in zip(paths, keys) if k in bad})




_WORKER_EMBEDDER: Optional[FaceEmbedder] = None


def _start_worker(model_dir: Optional[str]) -> None:
    global _WORKER_EMBEDDER  # one per worker process: dlib's networks load once, not per chunk
    _WORKER_EMBEDDER = FaceEmbedder(model_dir)


def _describe_files(keys: Sequence[str], embedder: Optional[FaceEmbedder] = None):
    """(described paths, their vectors, detected flags, {path: reason} for unreadable files)."""
    from PIL import Image, UnidentifiedImageError

    embedder = embedder or _WORKER_EMBEDDER
    chips, kept, bad = [], [], {}
    for key in keys:
        try:
            with Image.open(key) as image:
                pixels = np.asarray(image.convert("RGB"))
            chips.append(embedder.chip(pixels))
            kept.append(key)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            bad[key] = f"{key}: unreadable image ({error}); left out of the descriptors"
    vectors = embedder.describe([c for c, _ in chips]) if chips else np.empty((0, DIMENSIONS), np.float32)
    return kept, vectors, [found for _, found in chips], bad


def _describe_chunks(chunks: list[list[str]], model_dir: Optional[str], workers: Optional[int]):
    """Describe ``chunks`` of files in this process or, when there is enough work, in a pool
    of ``workers`` forked processes (as torch's DataLoader workers are; a spawned pool would
    re-run a user's script that has no ``__main__`` guard).  Where fork is missing: one process."""
    import multiprocessing

    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(chunks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        embedder = FaceEmbedder(model_dir)
        for chunk in chunks:
            yield _describe_files(chunk, embedder)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("fork"),
                             initializer=_start_worker, initargs=(model_dir,)) as pool:
        yield from pool.map(_describe_files, chunks)


def describe_images(images: np.ndarray, embedder: Optional[FaceEmbedder] = None,
                    model_dir: Optional[str] = None, batch_size: int = 64) -> Descriptors:
    """Descriptors of uint8 RGB images already in memory (NHWC, e.g. the aligned chips a photo
    gave or an upload), in their order; nothing is cached (arrays have no path to key on)."""
    embedder = embedder or FaceEmbedder(model_dir)
    vectors = np.full((len(images), DIMENSIONS), np.nan, dtype=np.float32)
    detected = np.zeros(len(images), dtype=bool)
    for start in range(0, len(images), batch_size):
        chips = [embedder.chip(np.ascontiguousarray(image)) for image in images[start:start + batch_size]]
        if chips:
            vectors[start:start + len(chips)] = embedder.describe([c for c, _ in chips])
            detected[start:start + len(chips)] = [found for _, found in chips]
    return Descriptors(vectors, detected)
