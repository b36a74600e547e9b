"""Stratified, seeded train/val/test splits that are written to disk so runs can be repeated."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd
from sklearn.model_selection import train_test_split

SPLITS = ("train", "val", "test")


def group_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per row naming its joint group, e.g. 'Female|Asian'; a missing value reads '?'."""
    if not columns:
        return pd.Series("all", index=frame.index)
    parts = [frame[c].map(lambda v: "?" if v is None or v != v else str(v)) for c in columns]
    keys = parts[0]
    for part in parts[1:]:
        keys = keys + "|" + part
    return keys


def strata(frame: pd.DataFrame, by: Sequence[str], min_count: int, max_strata: int | None = None) -> pd.Series:
    """One stratum label per row from the label combination ``by``.  Combinations too rare to be
    split are pooled into coarser ones (dropping the last column, then into one 'rare' stratum);
    when a split is too small to hold one row of every stratum, whole columns are dropped."""
    by = list(by)
    for depth in range(len(by), -1, -1):
        keys = _pooled(frame, by[:depth], min_count)
        if max_strata is None or keys.nunique() <= max_strata:
            break
    return keys


def _pooled(frame: pd.DataFrame, by: list[str], min_count: int) -> pd.Series:
    keys = group_keys(frame, by)
    for depth in range(len(by) - 1, -1, -1):
        counts = keys.map(keys.value_counts())
        if (counts >= min_count).all():
            break
        keys = keys.where(counts >= min_count, group_keys(frame, by[:depth]) + "|*")
    counts = keys.map(keys.value_counts())
    keys = keys.where(counts >= min_count, "rare")
    if (keys == "rare").sum() < min_count:  # too few even pooled: let them ride with the largest stratum
        keys = keys.where(keys != "rare", keys.value_counts().index[0])
    return keys


def _room(n: int, fraction: float) -> int:
    """How many strata a split of ``fraction`` of ``n`` rows can hold (scikit-learn's rounding)."""
    taken = math.ceil(n * fraction)
    return max(1, min(taken, n - taken))


def make_splits(frame: pd.DataFrame, *, by: Sequence[str] = ("gender", "race", "age_group"),
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> pd.Series:
    """A ``split`` label per row, stratified on the joint label combination ``by``."""
    if len(frame) < 3:
        raise ValueError(f"cannot split {len(frame)} rows into train/val/test")
    if not 0 < val_fraction + test_fraction < 1:
        raise ValueError("val_fraction + test_fraction must lie in (0, 1)")
    labels = strata(frame, [c for c in by if c in frame], 3, _room(len(frame), test_fraction))
    rest, test = train_test_split(frame.index, test_size=test_fraction, random_state=seed, stratify=labels)
    val_share = val_fraction / (1 - test_fraction)
    rest_strata = strata(frame.loc[rest], [c for c in by if c in frame], 2, _room(len(rest), val_share))
    train, val = train_test_split(rest, test_size=val_share, random_state=seed + 1, stratify=rest_strata)
    split = pd.Series("train", index=frame.index, name="split")
    split.loc[val] = "val"
    split.loc[test] = "test"
    return split


def assign_splits(frame: pd.DataFrame, *, splits_file: str | Path | None = None, **kwargs) -> pd.DataFrame:
    """Attach a ``split`` column: from ``splits_file`` if given (path -> split), else from a
    ``split`` column the reader found (ImageFolder trees), else a fresh stratified split.
    A reader's own train/test folders are respected; a missing val split is carved from train."""
    frame = frame.copy()
    if splits_file is not None:
        saved = pd.read_csv(splits_file)
        lookup = dict(zip(saved["path"], saved["split"]))
        frame["split"] = frame["path"].map(lookup)
        unknown = frame["split"].isna()
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} images are not in {splits_file}, e.g. {frame.loc[unknown, 'path'].iloc[0]}")
        return frame
    if "split" in frame and frame["split"].notna().all():
        if not (frame["split"] == "val").any():
            train = frame[frame["split"] == "train"]
            fraction, by = kwargs.get("val_fraction", 0.1), [c for c in kwargs.get("by", ()) if c in frame]
            _, val = train_test_split(train.index, test_size=fraction, random_state=kwargs.get("seed", 0),
                                      stratify=strata(train, by, 2, _room(len(train), fraction)))
            frame.loc[val, "split"] = "val"
        return frame
    frame["split"] = make_splits(frame, **kwargs)
    return frame


def save_splits(frame: pd.DataFrame, path: str | Path) -> None:
    frame[["path", "split"]].to_csv(path, index=False)


def check_splits(frame: pd.DataFrame) -> None:
    for name in SPLITS:
        if not (frame["split"] == name).any():
            raise ValueError(f"the {name} split is empty; give more data or other fractions")
