"""Fitting face heads: one classifier per task on dlib's face descriptors, strength and shape
chosen on validation rows.

The descriptors (:mod:`facefair.models.face_features`) keep what a face looks like and drop much
of how it was photographed; the fitted heads (:class:`facefair.models.face_heads.FaceHeads`) are
both ``facefair face-baseline`` (the heads alone, scored like a model) and what
``facefair face-heads RUN`` / ``train.face_heads`` attach to a CNN (docs/transfer.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from facefair.evaluate.metrics import all_task_metrics
from facefair.models.face_features import CACHE_VERSION, Descriptors, face_descriptors
from facefair.models.face_heads import FaceHeads, Head, head_from_sklearn
from facefair.table import predictions_frame
from facefair.tasks import TaskSpec, make_tasks, usable_tasks


#: Fewest labelled training rows for which the MLP candidate is fitted (logistic only below).
MLP_MIN_ROWS = 200


@dataclass
class EmbeddingConfig:
    """How the heads are fitted on the descriptors."""

    tasks: Sequence[str] = ("gender", "race", "age_group", "age")
    # Inverse L2 strengths tried per classification task; the one with the best validation
    # accuracy is kept (never the test split or another dataset).
    c_grid: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0)
    alpha_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0)   # ridge strengths for exact age
    # Hidden layers of the one-hidden-layer MLP candidates (also chosen on validation accuracy
    # against the logistic ones); () fits logistic regressions only.
    mlp_hidden: Sequence[int] = (256,)
    mlp_alpha: float = 0.01
    max_train: Optional[int] = None   # fit on a seeded subset of the train split
    max_val: Optional[int] = 1000     # validation rows used to choose C (descriptors cost time)
    seed: int = 0
    batch_size: int = 64
    model_dir: Optional[str] = None   # folder with dlib's .dat files (default: face-recognition-models)

    def __post_init__(self) -> None:
        if not self.c_grid or min(self.c_grid) <= 0 or not self.alpha_grid or min(self.alpha_grid) <= 0:
            raise ValueError("c_grid and alpha_grid need positive values")
        if any(h < 1 for h in self.mlp_hidden) or self.mlp_alpha < 0:
            raise ValueError("mlp_hidden needs positive layer widths and mlp_alpha >= 0")
        for name in ("max_train", "max_val"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(f"{name} must be at least 2 (or None for every row)")

    @property
    def name(self) -> str:
        return "dlib-face-embedding-logreg" + ("-mlp" if self.mlp_hidden else "")


def _classifier(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def _mlp(hidden: Sequence[int], alpha: float, seed: int):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # early_stopping holds out 10% of the training rows (seeded) to stop on, never the val split.
    return make_pipeline(StandardScaler(), MLPClassifier(tuple(hidden), alpha=alpha, early_stopping=True,
                                                         random_state=seed, max_iter=300))


def _regressor(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def fit_task(task: TaskSpec, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             config: EmbeddingConfig, weight: float = 1.0) -> tuple[Head, dict]:
    """One head on the rows ``y`` labels, chosen on the validation rows: the logistic strengths
    of ``c_grid`` and the MLP of ``mlp_hidden`` compete on validation accuracy (ties go to the
    earlier, simpler candidate); ridge strengths on validation MAE for exact age.

    ``y``/``y_val``: class indices with -1, or years with NaN, as :meth:`TaskSpec.encode` gives.
    Returns the head and what was tried (validation score per candidate).
    """
    keep, keep_val = task.labelled(y), task.labelled(y_val)
    if keep.sum() < 2:
        raise ValueError(f"task {task.name}: only {int(keep.sum())} labelled training rows")
    x, y, x_val, y_val = x[keep], y[keep], x_val[keep_val], y_val[keep_val]
    if task.kind == "regression":
        tried, heads = {}, {}
        for alpha in config.alpha_grid:
            heads[alpha] = head_from_sklearn(task, _regressor(alpha).fit(x, y), np.empty(0, dtype=np.int64), weight,
                                             f"ridge alpha={alpha:g}")
            tried[alpha] = float(np.abs(heads[alpha].predict(x_val) - y_val).mean()) if len(y_val) else float("nan")
        best = min(tried, key=lambda a: (np.nan_to_num(tried[a], nan=np.inf), a))
        return heads[best], {"chosen_alpha": best, "val_mae": tried}
    present = np.unique(y)
    if len(present) == 1:  # nothing to learn: that class, always
        bias = np.full(task.num_classes, -1e9)
        bias[present[0]] = 0.0
        head = Head(task.name, list(task.classes), np.zeros(x.shape[1]), np.ones(x.shape[1]),
                    [(np.zeros((x.shape[1], task.num_classes)), bias)], weight, "single class")
        return head, {"single_class": int(present[0])}
    dense = np.searchsorted(present, y)
    candidates: dict[str, Callable] = {f"logistic C={c:g}": (lambda c=c: _classifier(c)) for c in config.c_grid}
    # The MLP stops early on 10% of the rows it is given: too few rows leave it nothing to stop on.
    if config.mlp_hidden and len(y) >= MLP_MIN_ROWS:
        name = f"mlp {'x'.join(map(str, config.mlp_hidden))} alpha={config.mlp_alpha:g}"
        candidates[name] = lambda: _mlp(config.mlp_hidden, config.mlp_alpha, config.seed)
    tried, heads = {}, {}
    for name, make in candidates.items():
        heads[name] = head_from_sklearn(task, make().fit(x, dense), present, weight, name)
        tried[name] = float((heads[name].predict(x_val).argmax(axis=1) == y_val).mean()) if len(y_val) \
            else float("nan")
    # Ties (and a missing validation split) go to the earliest: the most regularised logistic.
    order = list(candidates)
    best = max(order, key=lambda n: (np.nan_to_num(tried[n], nan=-1.0), -order.index(n)))
    return heads[best], {"chosen": best, "val_accuracy": tried}


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


def fit_heads(train: pd.DataFrame, train_vectors: np.ndarray, val: pd.DataFrame, val_vectors: np.ndarray,
              race_scheme: Optional[str], config: EmbeddingConfig,
              progress: Callable[[str], None] = print, tasks: Optional[Sequence[TaskSpec]] = None,
              weights: Optional[dict[str, float]] = None) -> tuple[FaceHeads, dict]:
    """Fit one head per usable task on the readable train rows; choose each on ``val``.

    ``tasks``: the model's own task specs (their class order), else built from ``config.tasks``
    and ``race_scheme``; ``weights``: each head's blend weight (default 1)."""
    if tasks is None:
        names = usable_tasks(train, list(config.tasks))
        if not names:
            raise ValueError(f"none of the tasks {list(config.tasks)} has labels in the train split")
        tasks = make_tasks(names, race_scheme)
    weights = weights or {}
    ok, ok_val = ~np.isnan(train_vectors).any(axis=1), ~np.isnan(val_vectors).any(axis=1)
    train, train_vectors = train[ok].reset_index(drop=True), train_vectors[ok]
    val, val_vectors = val[ok_val].reset_index(drop=True), val_vectors[ok_val]
    models, tried = {}, {}
    for task in tasks:
        started = time.perf_counter()
        models[task.name], tried[task.name] = fit_task(
            task, train_vectors, task.encode(train[task.column]), val_vectors, task.encode(val[task.column]), config,
            weights.get(task.name, 1.0))
        progress(f"{task.name}: fitted in {time.perf_counter() - started:.1f} s, chose "
                 f"{models[task.name].chosen} ({tried[task.name]})")
    info = {"selection": tried, "n_train": len(train), "n_val": len(val)}
    return FaceHeads(models, CACHE_VERSION, info), info


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
    heads_tasks = make_tasks(list(heads.heads), race_scheme)
    predictions, metrics, detected = {}, {}, {}
    for name, frame in scored.items():
        predictions[name] = predictions_frame(frame.reset_index(drop=True), heads_tasks,
                                              heads.outputs(described[name].vectors))
        metrics[name] = all_task_metrics(predictions[name])
        detected[name] = float(described[name].detected.mean()) if len(frame) else float("nan")
    info = {"baseline": {**asdict(config), "tasks": [t.name for t in heads_tasks], "name": config.name,
                         "features": f"dlib face-recognition ResNet, 128-d ({CACHE_VERSION})"},
            **fit_info, "face_detected_share": detected, "wall_seconds": round(time.perf_counter() - started, 1)}
    return EmbeddingResult(predictions, metrics, info, skipped)
