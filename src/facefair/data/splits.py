"""Stratified, seeded train/val/test splits that are written to disk so runs can be repeated.

Saved splits name images relative to the data root, so a copied run or moved data still
matches; files that store absolute paths (older runs) are read too.  ``groups`` keeps every
row of a group (a duplicate cluster from ``facefair clean --duplicates``) in one split, so the
same picture never sits on both sides.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
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
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                groups: Optional[pd.Series] = None) -> pd.Series:
    """A ``split`` label per row, stratified on the joint label combination ``by``.  With
    ``groups`` (a group id per row, NaN for rows in no group) each group goes to one split whole:
    one representative row per group is split (stratified on its labels), the rest follow it."""
    if groups is not None and groups.notna().any():
        own = pd.Series([f"_row{i}" for i in frame.index], index=frame.index)  # ungrouped rows: a group each
        ids = groups.astype(object).where(groups.notna(), own)
        first = ~ids.duplicated()
        chosen = make_splits(frame[first], by=by, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        return ids.map(dict(zip(ids[first], chosen))).rename("split")
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


def data_root(data: str | Path | None, image_root: str | Path | None = None) -> Optional[Path]:
    """The folder saved paths are relative to: a CSV's image root, the dataset folder, or the
    label CSV's own folder."""
    if image_root:
        return Path(image_root)
    if not data:
        return None
    source = Path(data)
    return source if source.is_dir() else source.parent


def path_keys(paths: Sequence[str] | pd.Series, root: str | Path | None) -> pd.Series:
    """Each path relative to ``root`` (POSIX separators) when it lies under it, else as given."""
    paths = pd.Series(list(paths) if not isinstance(paths, pd.Series) else paths)
    if root is None:
        return paths.astype(str)
    base = os.path.abspath(root)

    def key(path: str) -> str:
        full = os.path.abspath(path)
        if os.path.commonpath([full, base]) != base:
            return str(path)
        return Path(os.path.relpath(full, base)).as_posix()
    return paths.astype(str).map(key)


def match_paths(paths: Sequence[str] | pd.Series, listed: Sequence[str] | pd.Series,
                root: str | Path | None) -> pd.Series:
    """For each of ``paths`` (a table's images), the position in ``listed`` (paths read from a
    file: relative to ``root`` or absolute) of the same image, or -1.  Absolute entries that no
    longer exist where they were (moved data) fall back to the file name when it is unique."""
    paths = pd.Series(list(paths))
    listed = pd.Series(list(listed)).astype(str)
    ours = path_keys(paths, root)
    theirs = listed.where(~listed.map(os.path.isabs), path_keys(listed, root))
    lookup = {key: i for i, key in enumerate(theirs)}
    found = ours.map(lambda k: lookup.get(k, -1))
    missing = found < 0
    if missing.any():
        names = theirs.map(lambda k: k.replace("\\", "/").rsplit("/", 1)[-1])
        unique = names[~names.duplicated(keep=False)]
        by_name = {name: i for i, name in unique.items()}
        ours_names = ours.map(lambda k: k.rsplit("/", 1)[-1])
        if not ours_names.duplicated(keep=False)[missing].any():
            found[missing] = ours_names[missing].map(lambda n: by_name.get(n, -1))
    return found.astype(int)


def read_saved_splits(splits_file: str | Path, paths: Sequence[str] | pd.Series,
                      root: str | Path | None) -> pd.DataFrame:
    """``path`` (as in ``paths``) and ``split`` from a saved splits.csv; unlisted images get NaN."""
    saved = pd.read_csv(splits_file)
    if not {"path", "split"} <= set(saved.columns):
        raise ValueError(f"{splits_file}: needs path and split columns, has {', '.join(saved.columns)}")
    position = match_paths(paths, saved["path"], root).to_numpy()
    split = saved["split"].to_numpy(dtype=object)[np.maximum(position, 0)]
    split[position < 0] = None
    return pd.DataFrame({"path": list(paths), "split": split})


def assign_splits(frame: pd.DataFrame, *, splits_file: str | Path | None = None, root: str | Path | None = None,
                  **kwargs) -> pd.DataFrame:
    """Attach a ``split`` column: from ``splits_file`` if given (path -> split; paths relative to
    ``root`` or absolute), else from a ``split`` column the reader found (ImageFolder trees),
    else a fresh stratified split (``groups=`` keeps groups together).  A reader's own
    train/test folders are respected; a missing val split is carved from train."""
    frame = frame.copy()
    if splits_file is not None:
        frame["split"] = read_saved_splits(splits_file, frame["path"], root)["split"].to_numpy()
        unknown = frame["split"].isna()
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} images are not in {splits_file}, "
                             f"e.g. {frame.loc[unknown, 'path'].iloc[0]}")
        return frame
    if "split" in frame and frame["split"].notna().all():
        if not (frame["split"] == "val").any():
            train = frame[frame["split"] == "train"]
            kwargs.pop("groups", None)
            fraction, by = kwargs.get("val_fraction", 0.1), [c for c in kwargs.get("by", ()) if c in frame]
            _, val = train_test_split(train.index, test_size=fraction, random_state=kwargs.get("seed", 0),
                                      stratify=strata(train, by, 2, _room(len(train), fraction)))
            frame.loc[val, "split"] = "val"
        return frame
    frame["split"] = make_splits(frame, **kwargs)
    return frame


def save_splits(frame: pd.DataFrame, path: str | Path, root: str | Path | None = None) -> None:
    """``path,split``; paths relative to ``root`` (the data root) when given."""
    pd.DataFrame({"path": path_keys(frame["path"], root).to_numpy(), "split": frame["split"].to_numpy()}).to_csv(
        path, index=False)


def read_groups(groups_file: str | Path, paths: Sequence[str] | pd.Series, root: str | Path | None) -> pd.Series:
    """A group id per image from a CSV with ``path`` and ``cluster`` (``facefair clean``'s
    duplicates.csv) or ``group``; images it does not list get NaN (a group of their own)."""
    listed = pd.read_csv(groups_file)
    column = next((c for c in ("cluster", "group", "cluster_id") if c in listed), None)
    if column is None or "path" not in listed:
        raise ValueError(f"{groups_file}: needs path and cluster (or group) columns, has {', '.join(listed.columns)}")
    position = match_paths(paths, listed["path"], root).to_numpy()
    ids = listed[column].astype(str).to_numpy(dtype=object)[np.maximum(position, 0)]
    ids[position < 0] = None
    return pd.Series(ids, index=paths.index if isinstance(paths, pd.Series) else None, dtype=object)


def check_splits(frame: pd.DataFrame) -> None:
    for name in SPLITS:
        if not (frame["split"] == name).any():
            raise ValueError(f"the {name} split is empty; give more data or other fractions")
