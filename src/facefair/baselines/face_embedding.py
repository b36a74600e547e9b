"""Face-pretrained features: dlib's face-recognition ResNet, then one linear model per task.

The ImageNet-initialised CNN fine-tuned on UTKFace reads capture quality as race: on the studio
faces of another dataset it calls most Asian and Indian faces White.  dlib's recognition network
(CC0, shipped by ``face-recognition-models``) was trained to tell people apart across photos of
every quality, so its 128-d descriptor keeps what a face looks like and drops much of how it was
photographed.  A logistic regression per classification task (ridge for exact age) on those
descriptors is the "face-pretrained feature source" lever of docs/transfer.md.

Chips follow dlib's own recipe: the largest frontal (HOG) face, or the central 76% of an aligned
crop when none is found; its 5 landmarks; a 150 px chip with padding 0.25.  Descriptors are cached
per image path (``CACHE_VERSION`` names the recipe), so refitting or scoring another dataset only
pays for images not seen before.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from facefair.baselines.pca_forest import TaskModel
from facefair.evaluate.metrics import all_task_metrics
from facefair.table import predictions_frame
from facefair.tasks import TaskSpec, make_tasks, usable_tasks

CACHE_VERSION = "face-embedding-v1"
DIMENSIONS = 128
# Share of an aligned crop's side kept on each edge when no face is detected (UTKFace and
# MTCNN crops put the face in the middle).
FALLBACK_MARGIN = 0.12


@dataclass
class EmbeddingConfig:
    """How the heads are fitted on the descriptors."""

    tasks: Sequence[str] = ("gender", "race", "age_group", "age")
    # Inverse L2 strengths tried per classification task; the one with the best validation
    # accuracy is kept (never the test split or another dataset).
    c_grid: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0)
    alpha_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0)   # ridge strengths for exact age
    max_train: Optional[int] = None   # fit on a seeded subset of the train split
    max_val: Optional[int] = 1000     # validation rows used to choose C (descriptors cost time)
    seed: int = 0
    batch_size: int = 64
    model_dir: Optional[str] = None   # folder with dlib's .dat files (default: face-recognition-models)

    def __post_init__(self) -> None:
        if not self.c_grid or min(self.c_grid) <= 0 or not self.alpha_grid or min(self.alpha_grid) <= 0:
            raise ValueError("c_grid and alpha_grid need positive values")
        for name in ("max_train", "max_val"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(f"{name} must be at least 2 (or None for every row)")

    @property
    def name(self) -> str:
        return "dlib-face-embedding-logreg"


class FaceEmbedder:
    """dlib's HOG detector, 5-point landmarks and face-recognition ResNet, loaded once."""

    def __init__(self, model_dir: Optional[str] = None):
        from facefair.align.detectors import _import_dlib, dlib_model_path

        self.dlib = _import_dlib()
        self.detector = self.dlib.get_frontal_face_detector()
        self.landmarks = self.dlib.shape_predictor(
            str(dlib_model_path("shape_predictor_5_face_landmarks.dat", model_dir)))
        self.network = self.dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat", model_dir)))

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


def face_descriptors(paths: Sequence[str], cache_dir: str | Path, model_dir: Optional[str] = None,
                     batch_size: int = 64, progress: bool = True) -> Descriptors:
    """Descriptors of ``paths``, computing and caching only those not cached yet.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    cache_dir : str or Path
        Folder of the decoded-image cache; descriptors go in ``cache_dir/face-embedding-v1/``
        as ``.npz`` shards (``paths``, ``X``, ``found``), read with pickling off.
    model_dir : str, optional
        Folder with dlib's ``.dat`` files (default: the ``face-recognition-models`` package).
    batch_size : int
        Chips described per call of the network.
    progress : bool
        Show a progress bar while describing new images.
    """
    from PIL import Image, UnidentifiedImageError

    folder = _shard_folder(cache_dir)
    known = _read_shards(folder) if folder.is_dir() else {}
    keys = [_key(p) for p in paths]
    missing = sorted({k for k in keys if k not in known})
    bad: dict[str, str] = {}
    if missing:
        embedder = FaceEmbedder(model_dir)
        new_paths, new_vectors, new_found = [], [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(missing), desc="face descriptors", unit="img")
        for start in range(0, len(missing), batch_size):
            chips, kept = [], []
            for key in missing[start:start + batch_size]:
                try:
                    with Image.open(key) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    chips.append(embedder.chip(pixels))
                    kept.append(key)
                except (OSError, UnidentifiedImageError, ValueError) as error:
                    bad[key] = f"{key}: unreadable image ({error}); left out of the descriptors"
            if chips:
                new_vectors.append(embedder.describe([c for c, _ in chips]))
                new_found.extend(found for _, found in chips)
                new_paths.extend(kept)
            if bar is not None:
                bar.update(min(batch_size, len(missing) - start))
        if bar is not None:
            bar.close()
        if new_paths:
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


def _classifier(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def _regressor(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def fit_task(task: TaskSpec, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             config: EmbeddingConfig) -> tuple[TaskModel, dict]:
    """One head on the rows ``y`` labels, its strength chosen on the validation rows.

    ``y``/``y_val``: class indices with -1, or years with NaN, as :meth:`TaskSpec.encode` gives.
    Returns the fitted model and what was tried (validation score per strength).
    """
    keep, keep_val = task.labelled(y), task.labelled(y_val)
    if keep.sum() < 2:
        raise ValueError(f"task {task.name}: only {int(keep.sum())} labelled training rows")
    x, y, x_val, y_val = x[keep], y[keep], x_val[keep_val], y_val[keep_val]
    if task.kind == "regression":
        tried, models = {}, {}
        for alpha in config.alpha_grid:
            models[alpha] = TaskModel(task, _regressor(alpha).fit(x, y), np.empty(0, dtype=np.int64))
            tried[alpha] = float(np.abs(models[alpha].predict(x_val) - y_val).mean()) if len(y_val) else float("nan")
        best = min(tried, key=lambda a: (np.nan_to_num(tried[a], nan=np.inf), a))
        return models[best], {"chosen_alpha": best, "val_mae": tried}
    present = np.unique(y)
    if len(present) == 1:
        return TaskModel(task, None, present), {"single_class": int(present[0])}
    dense = np.searchsorted(present, y)
    tried, models = {}, {}
    for c in config.c_grid:
        models[c] = TaskModel(task, _classifier(c).fit(x, dense), present)
        tried[c] = float((models[c].predict(x_val).argmax(axis=1) == y_val).mean()) if len(y_val) else float("nan")
    # Ties (and a missing validation split) go to the stronger regularisation.
    best = max(tried, key=lambda c: (np.nan_to_num(tried[c], nan=-1.0), -c))
    return models[best], {"chosen_C": best, "val_accuracy": tried}


def _subsample(frame: pd.DataFrame, limit: Optional[int], seed: int) -> pd.DataFrame:
    """A seeded subset stratified on gender x race where both are known (so a small draw keeps
    the rare groups), plain random otherwise."""
    if not limit or limit >= len(frame):
        return frame.reset_index(drop=True)
    strata = None
    if {"gender", "race"} <= set(frame.columns):
        # Missing labels are a stratum of their own (categorical columns keep NaN through astype(str)).
        strata = (frame["gender"].astype("string").fillna("?") + "/" + frame["race"].astype("string").fillna("?"))
        if strata.value_counts().min() < 2:
            strata = None
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(frame, train_size=limit, random_state=seed, stratify=strata)
    return chosen.sort_index().reset_index(drop=True)


@dataclass
class EmbeddingHeads:
    """The fitted heads: ``predict(vectors)`` gives the outputs the predictions table takes."""

    tasks: list[TaskSpec]
    models: dict[str, TaskModel]

    def outputs(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        readable = ~np.isnan(vectors).any(axis=1)
        result = {}
        for task in self.tasks:
            shape = (len(vectors),) if task.kind == "regression" else (len(vectors), task.num_classes)
            out = np.full(shape, np.nan, dtype=np.float32)
            if readable.any():
                out[readable] = self.models[task.name].predict(vectors[readable])
            result[task.name] = out
        return result


def fit_heads(train: pd.DataFrame, train_vectors: np.ndarray, val: pd.DataFrame, val_vectors: np.ndarray,
              race_scheme: Optional[str], config: EmbeddingConfig,
              progress: Callable[[str], None] = print) -> tuple[EmbeddingHeads, dict]:
    """Fit one head per usable task on the readable train rows; choose strengths on ``val``."""
    names = usable_tasks(train, list(config.tasks))
    if not names:
        raise ValueError(f"none of the tasks {list(config.tasks)} has labels in the train split")
    tasks = make_tasks(names, race_scheme)
    ok, ok_val = ~np.isnan(train_vectors).any(axis=1), ~np.isnan(val_vectors).any(axis=1)
    train, train_vectors = train[ok].reset_index(drop=True), train_vectors[ok]
    val, val_vectors = val[ok_val].reset_index(drop=True), val_vectors[ok_val]
    models, tried = {}, {}
    for task in tasks:
        started = time.perf_counter()
        models[task.name], tried[task.name] = fit_task(
            task, train_vectors, task.encode(train[task.column]), val_vectors, task.encode(val[task.column]), config)
        progress(f"{task.name}: fitted in {time.perf_counter() - started:.1f} s, {tried[task.name]}")
    return EmbeddingHeads(tasks, models), {"selection": tried, "n_train": len(train), "n_val": len(val)}


@dataclass
class EmbeddingResult:
    predictions: dict[str, pd.DataFrame]   # per scored table: "test" and each --transfer dataset
    metrics: dict[str, dict]
    info: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def run_face_embedding(train: pd.DataFrame, val: pd.DataFrame, scored: dict[str, pd.DataFrame],
                       race_scheme: Optional[str], config: EmbeddingConfig, cache_dir: str | Path,
                       progress: bool = True, log: Callable[[str], None] = print) -> EmbeddingResult:
    """Describe the faces, fit the heads on ``train`` (strengths chosen on ``val``) and write the
    predictions table of every frame in ``scored`` (e.g. ``{"test": ..., "mebeauty": ...}``)."""
    started = time.perf_counter()
    train = _subsample(train, config.max_train, config.seed)
    val = _subsample(val, config.max_val, config.seed)
    # One call for every table: the cache's shards are read once and new faces go in one shard.
    frames = {"train": train, "val": val, **scored}
    for name, frame in frames.items():
        log(f"{name}: {len(frame)} faces")
    everything = face_descriptors([p for f in frames.values() for p in f["path"]], cache_dir, config.model_dir,
                                  config.batch_size, progress)
    skipped = list(everything.bad.values())
    described, start = {}, 0
    for name, frame in frames.items():
        rows = slice(start, start + len(frame))
        described[name] = Descriptors(everything.vectors[rows], everything.detected[rows])
        start += len(frame)
    heads, fit_info = fit_heads(train, described["train"].vectors, val, described["val"].vectors,
                                race_scheme, config, log)
    predictions, metrics, detected = {}, {}, {}
    for name, frame in scored.items():
        predictions[name] = predictions_frame(frame.reset_index(drop=True), heads.tasks,
                                              heads.outputs(described[name].vectors))
        metrics[name] = all_task_metrics(predictions[name])
        detected[name] = float(described[name].detected.mean()) if len(frame) else float("nan")
    info = {"baseline": {**asdict(config), "tasks": [t.name for t in heads.tasks], "name": config.name,
                         "features": f"dlib face-recognition ResNet, 128-d ({CACHE_VERSION})"},
            **fit_info, "face_detected_share": detected, "wall_seconds": round(time.perf_counter() - started, 1)}
    return EmbeddingResult(predictions, metrics, info, skipped)
