"""Out-of-fold probabilities from fine-tuned networks: the slow, stronger label scorer.

The default scorer is a linear model on fixed features (minutes on a CPU).  This one trains a
facefair model (every checked task at once) on k-1 folds and predicts the held-out fold, k times,
so every image is scored by a network that never saw its label, as confident learning requires.
It costs k trainings; the fold runs stay under ``OUT/finetune/fold<i>`` (splits, model, report)
so they can be inspected or reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from facefair.run import Run


@dataclass(frozen=True)
class FinetuneConfig:
    folds: int = 5
    backbone: str = "mobilenetv2"
    weights: str = "local:mobilenet_v2"
    image_size: int = 64
    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    val_fraction: float = 0.1          # of each fold's training rows: picks the best epoch
    seed: int = 0
    cache_dir: str = ".facefair-cache"

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"--folds must be at least 2 for out-of-fold scores, got {self.folds}")


def _fold_of(frame: pd.DataFrame, tasks: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Each row's fold, stratified on the first task's label where it has one."""
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415

    key = frame[tasks[0]].astype(str).where(frame[tasks[0]].notna(), "?").to_numpy()
    fold = np.zeros(len(frame), dtype=int)
    for i, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(key, key)):
        fold[held] = i
    return fold


def out_of_fold_finetune(frame: pd.DataFrame, tasks: Sequence[str], out_dir: str | Path,
                         config: FinetuneConfig = FinetuneConfig(), *, progress: bool = True) -> pd.DataFrame:
    """One row per image of ``frame`` (``path`` plus label columns): ``<task>_prob_<class>`` for
    every checked task, each from the fold model that did not train on it."""
    from facefair.config import DataConfig, RunConfig, TrainConfig  # noqa: PLC0415
    from facefair.models.multitask import ModelConfig  # noqa: PLC0415
    from facefair.train.loop import train  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["path", *(c for c in ("gender", "race", "age", "age_group") if c in frame)]
    table = out / "labels.csv"
    frame[columns].to_csv(table, index=False)
    fold = _fold_of(frame, list(tasks), config.folds, config.seed)
    rng = np.random.default_rng(config.seed)
    parts = []
    for i in range(config.folds):
        run = out / f"fold{i}"
        split = np.where(fold == i, "test", "train").astype(object)
        train_rows = np.flatnonzero(fold != i)
        split[rng.choice(train_rows, max(1, int(config.val_fraction * len(train_rows))), replace=False)] = "val"
        splits = run / "splits-in.csv"
        run.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"path": frame["path"], "split": split}).to_csv(splits, index=False)
        if not Run(run).predictions_path.exists():  # a fold finished before is reused (resumable)
            if progress:
                print(f"clean --labels --scorer finetune: fold {i + 1}/{config.folds} "
                      f"({int((split == 'train').sum())} train images)", flush=True)
            train(RunConfig(
                data=DataConfig(data=str(table), kind="csv", splits_file=str(splits), cache_dir=config.cache_dir),
                model=ModelConfig(backbone=config.backbone, weights=config.weights or None,
                                  image_size=config.image_size, tasks=list(tasks)),
                train=TrainConfig(out_dir=str(run), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                  warmup_epochs=min(1.0, 0.3 * config.epochs), seed=config.seed + i, tta=False,
                                  progress=False, tensorboard=False, framing_sample=0)))
        parts.append(Run(run).predictions())
    predictions = pd.concat(parts, ignore_index=True)
    keep = ["path", *(c for c in predictions.columns if any(c.startswith(f"{t}_prob_") for t in tasks))]
    scored = frame[["path"]].merge(predictions[keep], on="path", how="left")
    if scored[keep[1:]].isna().all(axis=1).any():
        missing = scored.loc[scored[keep[1:]].isna().all(axis=1), "path"].head(3).tolist()
        raise RuntimeError(f"no out-of-fold prediction for {missing} (unreadable in training?)")
    return scored
