"""Which rows a baseline sees, and their pixels.

Baselines must be scored on exactly the faces the deep model was scored on, so the split comes
from the run's ``splits.csv`` when one is given, and otherwise from the same seeded stratified
split the trainer makes (same defaults), which for the same data gives the same test rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.data.cache import build_cache
from facefair.data.readers import LabelTable, read_dataset, restrict_race_scheme
from facefair.data.splits import assign_splits, data_root, read_saved_splits


@dataclass
class DataSelection:
    """Where the faces come from and how they are split (the trainer's defaults)."""

    data: str
    kind: str = "auto"
    image_root: Optional[str] = None
    race_scheme: Optional[str] = None
    splits_file: Optional[str] = None
    split_by: Sequence[str] = ("gender", "race", "age_group")
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    cache_dir: str = ".facefair-cache"
    workers: int = 0  # decode processes; 0: one per core


@dataclass
class SplitTable:
    frame: pd.DataFrame          # every usable row, with a ``split`` column
    table: LabelTable            # what the reader returned (race scheme, problems)
    problems: list[str] = field(default_factory=list)


def load_split_table(selection: DataSelection) -> SplitTable:
    """Read the dataset and attach the split.  With a splits file, only the rows it names are kept:
    a run trained on ``--limit N`` rows saved a splits.csv of just those rows, and the baseline
    should see the same ones rather than fail on the rest."""
    table = restrict_race_scheme(
        read_dataset(selection.data, kind=selection.kind, image_root=selection.image_root), selection.race_scheme)
    frame = table.frame
    root = data_root(selection.data, selection.image_root)
    if selection.splits_file is not None:
        # Saved paths are relative to the data root (older runs: absolute); read_saved_splits matches both.
        known = read_saved_splits(selection.splits_file, frame["path"], root)["split"].notna().to_numpy()
        if not known.any():
            raise ValueError(f"no image of {selection.data} is listed in {selection.splits_file}: "
                             "was that run trained on this dataset?")
        frame = frame[known].reset_index(drop=True)
    frame = assign_splits(frame, splits_file=selection.splits_file, root=root, by=list(selection.split_by),
                          val_fraction=selection.val_fraction, test_fraction=selection.test_fraction,
                          seed=selection.seed)
    return SplitTable(frame, table, [str(p) for p in table.problems])


@dataclass
class Pixels:
    images: np.ndarray      # (N, size, size, 3) uint8 rows for the readable images of ``frame``
    frame: pd.DataFrame     # the readable rows, in the order of ``images``
    skipped: list[str]      # why each unreadable image was left out


def load_pixels(frame: pd.DataFrame, all_paths: Sequence[str], size: int, selection: DataSelection,
                progress: bool = True) -> Pixels:
    """Decoded pixels of ``frame``'s images from the shared image cache.  The cache is keyed by
    ``all_paths`` (the whole table), so one decode serves every split and every later run."""
    cache = build_cache(list(all_paths), size, selection.cache_dir, workers=selection.workers or None,
                        progress=progress)
    index = cache.indices(frame["path"])
    readable = index >= 0
    skipped = [cache.bad[p] for p in frame.loc[~readable, "path"]]
    rows = index[readable]
    order = np.argsort(rows, kind="stable")  # sequential reads from the memory map, then unsort
    images = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    images[order] = cache.images[rows[order]]
    return Pixels(images, frame[readable].reset_index(drop=True), skipped)
