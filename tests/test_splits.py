import numpy as np
import pandas as pd
import pytest

from facefair.data.readers import read_utkface
from facefair.data.splits import assign_splits, make_splits, save_splits


def _frame(n=900, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "path": [f"img{i}.jpg" for i in range(n)],
        "gender": rng.choice(["Male", "Female"], n),
        "race": rng.choice(["White", "Black", "Asian", "Indian", "Others"], n, p=[.4, .2, .2, .15, .05]),
        "age_group": rng.choice(["20-29", "30-39", "70+"], n),
    })


def test_split_sizes_seeded_and_disjoint():
    frame = _frame()
    a = make_splits(frame, seed=3)
    b = make_splits(frame, seed=3)
    c = make_splits(frame, seed=4)
    assert (a == b).all() and not (a == c).all()
    counts = a.value_counts()
    assert counts["test"] == 180 and abs(counts["val"] - 90) <= 1 and counts.sum() == 900


def test_split_is_stratified_on_the_joint_groups():
    frame = _frame(2000)
    split = make_splits(frame, by=("gender", "race"), seed=0)
    overall = frame.groupby(["gender", "race"]).size() / len(frame)
    test = frame[split == "test"].groupby(["gender", "race"]).size() / (split == "test").sum()
    assert np.abs(overall - test).max() < 0.01


def test_rare_groups_and_tiny_data_still_split():
    frame = _frame(40)
    frame.loc[0, "race"] = "Unique"
    split = make_splits(frame, seed=0)
    assert set(split) == {"train", "val", "test"}
    with pytest.raises(ValueError):
        make_splits(frame.head(2))


def test_saved_split_reproduces_and_rejects_unknown_rows(tmp_path):
    frame = _frame()
    first = assign_splits(frame, seed=1)
    save_splits(first, tmp_path / "splits.csv")
    again = assign_splits(frame, splits_file=tmp_path / "splits.csv")
    assert (again["split"] == first["split"]).all()
    bigger = pd.concat([frame, frame.head(1).assign(path="new.jpg")], ignore_index=True)
    with pytest.raises(ValueError, match="not in"):
        assign_splits(bigger, splits_file=tmp_path / "splits.csv")


def test_reader_split_folders_are_kept_and_val_carved_from_train():
    frame = _frame(300).assign(split=["test"] * 60 + ["train"] * 240)
    out = assign_splits(frame, seed=0, val_fraction=0.1, by=("gender",))
    assert (out["split"].iloc[:60] == "test").all()
    assert (out["split"] == "val").sum() == 24


def test_real_utkface_split(utkface_dir):
    frame = read_utkface(utkface_dir).frame
    split = make_splits(frame, seed=0)
    assert abs((split == "test").mean() - 0.2) < 0.002
    share = frame.groupby(split)["race"].value_counts(normalize=True).unstack()
    assert (share.max() - share.min()).max() < 0.01  # race mix equal in all splits
