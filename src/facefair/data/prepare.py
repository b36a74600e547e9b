"""From a DataConfig to per-split batches and targets: read, split (saved), cache, encode."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from facefair.config import DataConfig
from facefair.data.batches import ArrayBatches, FileBatches
from facefair.data.cache import build_cache
from facefair.data.readers import LabelTable, Problem, read_dataset, restrict_race_scheme
from facefair.data.exclusions import apply_actions
from facefair.data.splits import (SPLITS, _room, assign_splits, check_splits, data_root, read_groups, save_splits,
                                  strata)
from facefair.run import Run
from facefair.tasks import TaskSpec, encode_targets, make_tasks, usable_tasks

log = logging.getLogger("facefair")
Batches = Union[ArrayBatches, FileBatches]


@dataclass
class SplitData:
    frame: pd.DataFrame
    targets: dict[str, np.ndarray]
    batches: Batches


@dataclass
class PreparedData:
    splits: dict[str, SplitData]
    tasks: list[TaskSpec]
    race_scheme: Optional[str]
    problems: list[Problem] = field(default_factory=list)
    skipped_images: list[str] = field(default_factory=list)
    cache_dir: Optional[str] = None


def load_table(config: DataConfig) -> LabelTable:
    if not config.data:
        raise ValueError("no dataset given (--data PATH or data: in the config)")
    table = read_dataset(config.data, kind=config.kind, image_root=config.image_root, extra_csvs=config.extra_csvs,
                         layout=config.layout, label_map=config.label_map)
    return restrict_race_scheme(table, config.race_scheme)


def subsample(frame: pd.DataFrame, limit: Optional[int], seed: int) -> pd.DataFrame:
    if not limit or limit >= len(frame):
        return frame
    labels = strata(frame, [c for c in ("gender", "race") if c in frame], 2, _room(len(frame), limit / len(frame)))
    keep, _ = train_test_split(frame.index, train_size=limit, random_state=seed, stratify=labels)
    return frame.loc[sorted(keep)].reset_index(drop=True)


def prepare_data(config: DataConfig, task_names: list[str], image_size: int, batch_size: int, *, seed: int,
                 out_dir: Optional[Path] = None, splits_wanted=SPLITS, pin_memory: bool = False,
                 progress: bool = True, write: bool = True) -> PreparedData:
    table = load_table(config)
    for problem in table.problems[:5]:
        log.warning("data: %s", problem)
    if len(table.problems) > 5:
        log.warning("data: %d more problems (all listed in the report)", len(table.problems) - 5)
    frame = subsample(table.frame, config.limit, seed)

    splits_file = config.splits_file
    if splits_file is None and out_dir is not None and Run(out_dir).splits_path.exists():
        splits_file = str(Run(out_dir).splits_path)  # a resumed or re-evaluated run keeps its split
    root = data_root(config.data, config.image_root)
    groups = read_groups(config.split_groups, frame["path"], root) if config.split_groups else None
    if groups is not None and splits_file is not None:
        log.warning("split_groups %s is not used: the split comes from %s", config.split_groups, splits_file)
    frame = assign_splits(frame, splits_file=splits_file, root=root, by=config.split_by,
                          val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=seed,
                          groups=groups)
    check_splits(frame)
    if out_dir is not None and write:
        save_splits(frame, Run(out_dir).splits_path, root)
    if config.exclude or config.relabel or config.downweight:  # after the split is saved: val/test stay untouched
        frame, actions = apply_actions(frame, root, exclude=config.exclude, relabel=config.relabel,
                                       downweight=config.downweight, downweight_factor=config.downweight_factor)
        log.info("data actions on train rows: %s", actions["action"].value_counts().to_dict() or "none matched")
        if out_dir is not None and write:
            actions.to_csv(out_dir / "data_actions.csv", index=False)

    names = usable_tasks(frame, task_names)
    dropped = sorted(set(task_names) - set(names))
    if dropped:
        log.warning("no labels for tasks %s in this data; they are left out", dropped)
    if not names:
        raise ValueError(f"none of the tasks {task_names} has labels in {config.data}")
    tasks = make_tasks(names, table.race_scheme)

    frame, skipped, cache_dir, make_batches = attach_images(frame, config, image_size, batch_size, pin_memory, progress)
    splits = {}
    for name in splits_wanted:
        part = frame[frame["split"] == name].reset_index(drop=True)
        if part.empty:
            raise ValueError(f"the {name} split has no readable images")
        splits[name] = SplitData(part.drop(columns="_cache_index", errors="ignore"), encode_targets(part, tasks),
                                 make_batches(part))
    return PreparedData(splits, tasks, table.race_scheme, table.problems, skipped, cache_dir)


def attach_images(frame: pd.DataFrame, config: DataConfig, image_size: int, batch_size: int, pin_memory: bool = False,
                  progress: bool = True):
    """Decode through the cache when one is configured (dropping and naming unreadable images),
    and return a factory that gives any subset of ``frame`` its batches."""
    workers = config.workers or (os.cpu_count() or 1)
    if not config.cache_dir:
        def from_files(part: pd.DataFrame) -> Batches:
            return FileBatches(part["path"].tolist(), image_size, batch_size, workers=workers, pin_memory=pin_memory)
        return frame, [], None, from_files
    cache = build_cache(frame["path"].tolist(), image_size, config.cache_dir, workers=workers, progress=progress)
    index = cache.indices(frame["path"])
    skipped = [cache.bad[path] for path in frame.loc[index < 0, "path"]]
    for error in skipped:
        log.warning("skipped image %s", error)
    frame = frame.assign(_cache_index=index)[index >= 0]

    def from_cache(part: pd.DataFrame) -> Batches:
        return ArrayBatches(cache.images, part["_cache_index"].to_numpy(), batch_size)
    return frame, skipped, str(cache.directory), from_cache


def whole_table_split(config: DataConfig, tasks: list[TaskSpec], image_size: int, batch_size: int,
                      pin_memory: bool = False) -> tuple[SplitData, LabelTable, list[str]]:
    """Every row of a dataset as one evaluation split (a foreign test set has no train/val/test)."""
    table = load_table(config)
    split, skipped = frame_split(table.frame, config, tasks, image_size, batch_size, pin_memory)
    return split, table, skipped


def frame_split(frame: pd.DataFrame, config: DataConfig, tasks: list[TaskSpec], image_size: int, batch_size: int,
                pin_memory: bool = False) -> tuple[SplitData, list[str]]:
    """The rows of ``frame`` (a ``path`` column plus labels) as one evaluation split, and the
    images that could not be read."""
    frame, skipped, _, make_batches = attach_images(frame, config, image_size, batch_size, pin_memory)
    frame = frame.reset_index(drop=True)
    return (SplitData(frame.drop(columns="_cache_index", errors="ignore"), encode_targets(frame, tasks),
                      make_batches(frame)), skipped)
