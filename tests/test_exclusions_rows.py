"""facefair.data.exclusions' row selectors: files of ``facefair clean`` name images by their path
under the data folder, so two images that share a file name (FairFace's train/1.jpg, val/1.jpg)
stay two images."""

import pandas as pd

from facefair.data.exclusions import HELD_OUT, copies_across, hold_out, listed_rows

PATHS = ["train/1.jpg", "train/2.jpg", "val/1.jpg", "test/1.jpg"]
SPLIT = ["train", "train", "val", "test"]


def test_listed_rows_match_paths_not_file_names_and_count_only_flags_of_the_task(tmp_path):
    pd.DataFrame({"path": ["val/1.jpg", "train/2.jpg", "train/1.jpg"], "task": ["gender", "gender", "race"],
                  "is_label_issue": [True, False, True]}).to_csv(tmp_path / "scores.csv", index=False)
    root = tmp_path / "data"
    assert listed_rows(PATHS, tmp_path / "scores.csv", root, task="gender").tolist() == [False, False, True, False]
    assert listed_rows(PATHS, tmp_path / "scores.csv", root).tolist() == [True, False, True, False]
    absolute = [str(root / p) for p in PATHS]  # a table with absolute paths, a file with relative ones
    assert listed_rows(absolute, tmp_path / "scores.csv", root).tolist() == [True, False, True, False]


def test_copies_across_names_train_rows_whose_cluster_reaches_val_or_test(tmp_path):
    pd.DataFrame({"path": ["train/1.jpg", "test/1.jpg", "train/2.jpg"], "cluster": [4, 4, 5]}).to_csv(
        tmp_path / "duplicates.csv", index=False)
    rows = copies_across(PATHS, SPLIT, tmp_path / "duplicates.csv", tmp_path)
    assert rows.tolist() == [True, False, False, False]
    reverse = copies_across(PATHS, SPLIT, tmp_path / "duplicates.csv", tmp_path, side="test", others=("train",))
    assert reverse.tolist() == [False, False, False, True]


def test_hold_out_moves_only_the_given_rows():
    splits = pd.DataFrame({"path": PATHS, "split": SPLIT})
    held = hold_out(splits, [False, True, False, False])
    assert held["split"].tolist() == ["train", HELD_OUT, "val", "test"]
    assert splits["split"].tolist() == SPLIT  # the input is left as it was
