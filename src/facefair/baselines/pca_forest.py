"""Classical baselines: PCA on raw pixels ("eigenfaces") + one forest per task.

What a deep model has to beat, as earlier face-attribute projects measured it: a class-balanced
random forest (or XGBoost with balancing sample weights) per classification task and a
regressor for exact age, on the principal components of small decoded face images.  The test
predictions use the same table as the deep models, so the same metrics and audit apply.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils.class_weight import compute_sample_weight

from facefair.table import predictions_frame
from facefair.evaluate.metrics import all_task_metrics
from facefair.tasks import TaskSpec, make_tasks, usable_tasks

MODELS = ("rf", "xgb")


@dataclass
class BaselineConfig:
    model: str = "rf"                 # rf: random forest, xgb: XGBoost
    size: int = 32                    # side of the decoded image, pixels
    grayscale: bool = False           # one channel instead of three (3x fewer features)
    components: int = 100             # principal components kept
    n_estimators: int = 200           # trees (rf) or boosting rounds (xgb)
    max_depth: Optional[int] = None   # None: rf grows full trees, xgb uses 6
    learning_rate: float = 0.1        # xgb only
    min_samples_leaf: int = 2         # rf only; full-depth leaves of one face just memorise it
    # rf only: features tried per split, for every task. sklearn's regressor default (1.0, all)
    # fits exact age 6x slower on 100 components for 0.5 year less MAE on UTKFace (11.7 vs 12.2).
    max_features: Union[str, float] = "sqrt"
    max_train: Optional[int] = None   # fit on a seeded subset of the train split (quick looks)
    tasks: Sequence[str] = ("gender", "race", "age_group", "age")
    seed: int = 0
    jobs: int = -1                    # parallel tree builders (-1: all cores)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown baseline model {self.model!r}: {', '.join(MODELS)}")
        if self.components < 1 or self.size < 4:
            raise ValueError("components must be >= 1 and size >= 4")

    @property
    def name(self) -> str:
        return f"pca{self.components}-{self.model}-{self.size}px{'-gray' if self.grayscale else ''}"


def pixel_features(images: np.ndarray, grayscale: bool = False) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) float32 in [0, 1]; grey is the ITU-R 601 luma."""
    x = images.astype(np.float32) / 255.0
    if grayscale:
        x = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return x.reshape(len(x), -1)


def fit_pca(features: np.ndarray, components: int, seed: int) -> PCA:
    """Randomised PCA: exact SVD of a 14k x 3k matrix is wasted work for 100 components."""
    components = min(components, features.shape[0], features.shape[1])
    return PCA(n_components=components, svd_solver="randomized", random_state=seed).fit(features)


def _classifier(config: BaselineConfig, n_classes: int):
    if config.model == "rf":
        # 'balanced' reweights classes inversely to their frequency, as the seed projects did.
        return RandomForestClassifier(n_estimators=config.n_estimators, max_depth=config.max_depth,
                                      min_samples_leaf=config.min_samples_leaf, max_features=config.max_features,
                                      class_weight="balanced",
                                      n_jobs=config.jobs, random_state=config.seed)
    from xgboost import XGBClassifier
    objective = "binary:logistic" if n_classes == 2 else "multi:softprob"
    return XGBClassifier(n_estimators=config.n_estimators, max_depth=config.max_depth or 6,
                         learning_rate=config.learning_rate, objective=objective, tree_method="hist",
                         n_jobs=config.jobs, random_state=config.seed, verbosity=0)


def _regressor(config: BaselineConfig):
    if config.model == "rf":
        return RandomForestRegressor(n_estimators=config.n_estimators, max_depth=config.max_depth,
                                     min_samples_leaf=config.min_samples_leaf, max_features=config.max_features,
                                     n_jobs=config.jobs, random_state=config.seed)
    from xgboost import XGBRegressor
    # Absolute error is what we report (MAE); it is also robust to the noisy UTK ages.
    return XGBRegressor(n_estimators=config.n_estimators, max_depth=config.max_depth or 6,
                        learning_rate=config.learning_rate, objective="reg:absoluteerror", tree_method="hist",
                        n_jobs=config.jobs, random_state=config.seed, verbosity=0)


@dataclass
class TaskModel:
    task: TaskSpec
    estimator: object
    present: np.ndarray  # class indices seen in training, in the estimator's column order

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities over all of the task's classes (N, C), or years (N,)."""
        if self.task.kind == "regression":
            return self.estimator.predict(x).astype(np.float32)
        proba = np.zeros((len(x), self.task.num_classes), dtype=np.float32)
        if len(self.present) == 1:  # a split with one class: certain of it
            proba[:, self.present[0]] = 1.0
            return proba
        # A class absent from the train split gets probability 0 rather than shifting the columns.
        proba[:, self.present] = self.estimator.predict_proba(x)
        return proba / proba.sum(axis=1, keepdims=True)


def fit_task(task: TaskSpec, x: np.ndarray, y: np.ndarray, config: BaselineConfig) -> TaskModel:
    """Fit one task on the rows it labels (``y``: class index with -1 or years with NaN)."""
    keep = task.labelled(y)
    if keep.sum() < 2:
        raise ValueError(f"task {task.name}: only {int(keep.sum())} labelled training rows")
    x, y = x[keep], y[keep]
    if task.kind == "regression":
        return TaskModel(task, _regressor(config).fit(x, y), np.empty(0, dtype=np.int64))
    present = np.unique(y)
    if len(present) == 1:
        return TaskModel(task, None, present)
    # Estimators want labels 0..K-1 over the classes they actually see.
    dense = np.searchsorted(present, y)
    estimator = _classifier(config, len(present))
    if config.model == "xgb":
        estimator.fit(x, dense, sample_weight=compute_sample_weight("balanced", dense))
    else:
        estimator.fit(x, dense)
    return TaskModel(task, estimator, present)


@dataclass
class BaselineResult:
    predictions: pd.DataFrame
    metrics: dict
    info: dict = field(default_factory=dict)


def _subsample(n: int, limit: Optional[int], seed: int) -> np.ndarray:
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def run_pca_forest(train_frame: pd.DataFrame, train_images: np.ndarray, test_frame: pd.DataFrame,
                   test_images: np.ndarray, race_scheme: Optional[str], config: BaselineConfig,
                   progress=print) -> BaselineResult:
    """Fit PCA and one model per task on the train rows, predict the test rows."""
    names = usable_tasks(train_frame, list(config.tasks))
    if not names:
        raise ValueError(f"none of the tasks {list(config.tasks)} has labels in the train split")
    tasks = make_tasks(names, race_scheme)
    chosen = _subsample(len(train_frame), config.max_train, config.seed)
    train_frame = train_frame.iloc[chosen].reset_index(drop=True)
    started = time.perf_counter()
    x_train = pixel_features(train_images[chosen], config.grayscale)
    pca = fit_pca(x_train, config.components, config.seed)
    z_train = pca.transform(x_train)
    z_test = pca.transform(pixel_features(test_images, config.grayscale))
    retained = float(pca.explained_variance_ratio_.sum())
    progress(f"PCA: {pca.n_components_} components keep {retained:.1%} of the pixel variance "
             f"({x_train.shape[1]} features, {len(x_train)} train images)")
    outputs, seconds = {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        model = fit_task(task, z_train, task.encode(train_frame[task.column]), config)
        outputs[task.name] = model.predict(z_test)
        seconds[task.name] = round(time.perf_counter() - t0, 2)
        progress(f"{task.name}: fitted {config.model} in {seconds[task.name]:.1f} s")
    predictions = predictions_frame(test_frame, tasks, outputs)
    info = {"baseline": {**asdict(config), "tasks": list(names), "name": config.name},
            "pca": {"components": int(pca.n_components_), "variance_retained": retained,
                    "explained_variance_ratio": pca.explained_variance_ratio_.round(6).tolist()},
            "n_train": len(train_frame), "n_test": len(test_frame), "fit_seconds": seconds,
            "wall_seconds": round(time.perf_counter() - started, 1)}
    return BaselineResult(predictions, all_task_metrics(predictions), info)
