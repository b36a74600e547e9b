"""Acting on `facefair clean`'s files: splits saved relative to the data root (old absolute files
still read), duplicate clusters kept in one split, and train-only exclusions and relabels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefair.data.exclusions import apply_actions
from facefair.data.splits import assign_splits, make_splits, read_groups, save_splits


def _frame(root, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "path": [str(root / "faces" / f"img{i:04d}.jpg") for i in range(n)],
        "gender": rng.choice(["Male", "Female"], n), "race": rng.choice(["White", "Black", "Asian"], n),
        "age_group": rng.choice(["20-29", "30-39"], n),
    })


def test_saved_split_is_relative_and_survives_moving_the_data(tmp_path):
    frame = _frame(tmp_path / "data")
    split = assign_splits(frame, seed=3)
    save_splits(split, tmp_path / "splits.csv", tmp_path / "data")
    saved = pd.read_csv(tmp_path / "splits.csv")
    assert saved["path"].iloc[0] == "faces/img0000.jpg"  # no machine-specific prefix
    moved = frame.assign(path=frame["path"].str.replace(str(tmp_path / "data"), str(tmp_path / "elsewhere")))
    again = assign_splits(moved, splits_file=tmp_path / "splits.csv", root=tmp_path / "elsewhere")
    assert (again["split"].to_numpy() == split["split"].to_numpy()).all()


def test_old_absolute_split_files_still_read(tmp_path):
    frame = _frame(tmp_path / "data")
    split = assign_splits(frame, seed=1)
    split[["path", "split"]].to_csv(tmp_path / "old.csv", index=False)  # the former format
    again = assign_splits(frame, splits_file=tmp_path / "old.csv", root=tmp_path / "data")
    assert (again["split"].to_numpy() == split["split"].to_numpy()).all()


def test_duplicate_clusters_never_cross_the_split(tmp_path):
    frame = _frame(tmp_path, n=300, seed=2)
    clusters = pd.DataFrame({"cluster": np.repeat(np.arange(40), 3),
                             "path": frame["path"].iloc[:120].to_numpy()})
    clusters.to_csv(tmp_path / "duplicates.csv", index=False)
    groups = read_groups(tmp_path / "duplicates.csv", frame["path"], tmp_path)
    # Without groups a random split puts most of these 40 triples on more than one side.
    plain = make_splits(frame, seed=0)
    assert (plain.iloc[:120].groupby(np.repeat(np.arange(40), 3)).nunique() > 1).sum() > 10
    grouped = make_splits(frame, seed=0, groups=groups)
    assert (grouped.iloc[:120].groupby(np.repeat(np.arange(40), 3)).nunique() == 1).all()
    share = grouped.value_counts(normalize=True)
    assert abs(share["test"] - 0.2) < 0.05 and abs(share["val"] - 0.1) < 0.05


def test_exclude_and_relabel_touch_train_rows_only(tmp_path):
    frame = _frame(tmp_path / "data", n=60)
    frame["split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    rel = lambda i: f"faces/img{i:04d}.jpg"  # noqa: E731
    pd.DataFrame({"path": [rel(1), rel(2), rel(55)], "task": ["gender", "race", "gender"],
                  "given_label": ["x", "x", "x"], "suggested_label": ["Female", "Asian", "Female"],
                  "is_label_issue": [True, True, True]}).to_csv(tmp_path / "label_issues.csv", index=False)
    pd.DataFrame({"path": [frame["path"][3], frame["path"][45]]}).to_csv(tmp_path / "drop.csv", index=False)

    masked, actions = apply_actions(frame, tmp_path / "data", exclude=[tmp_path / "label_issues.csv",
                                                                       tmp_path / "drop.csv"])
    by_path = masked.set_index("path")
    assert pd.isna(by_path.at[frame["path"][1], "gender"]) and by_path.at[frame["path"][1], "race"] == frame["race"][1]
    assert pd.isna(by_path.at[frame["path"][2], "race"])
    assert by_path.at[frame["path"][55], "gender"] == frame["gender"][55]  # a test row keeps its label
    assert frame["path"][3] not in by_path.index and frame["path"][45] in by_path.index  # val row kept
    assert sorted(actions["action"]) == ["excluded image", "label masked", "label masked"]

    relabelled, actions = apply_actions(frame, tmp_path / "data", relabel=[tmp_path / "label_issues.csv"])
    by_path = relabelled.set_index("path")
    assert by_path.at[frame["path"][1], "gender"] == "Female" and by_path.at[frame["path"][2], "race"] == "Asian"
    assert by_path.at[frame["path"][55], "gender"] == frame["gender"][55]
    assert len(relabelled) == len(frame) and list(actions["action"]) == ["relabelled", "relabelled"]


def test_a_file_without_paths_is_one_clear_error(tmp_path):
    frame = _frame(tmp_path, n=10).assign(split="train")
    pd.DataFrame({"file": ["a"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="bad.csv: needs column"):
        apply_actions(frame, tmp_path, exclude=[tmp_path / "bad.csv"])


def test_training_data_honours_exclude_and_writes_what_it_did(utk_sample, tmp_path):
    """prepare_data (what `facefair train` runs): the saved split is relative, flagged train labels
    are masked, test labels are not, and RUN/data_actions.csv lists each change."""
    from facefair.config import DataConfig
    from facefair.data.prepare import prepare_data

    config = DataConfig(data=str(utk_sample), cache_dir=str(tmp_path / "cache"))
    first = prepare_data(config, ["gender", "race"], 32, 16, seed=0, out_dir=tmp_path, progress=False)
    saved = pd.read_csv(tmp_path / "splits.csv")
    assert not saved["path"].str.startswith("/").any()
    train, test = first.splits["train"].frame, first.splits["test"].frame
    listed = pd.DataFrame({"path": [Path(p).name for p in (train["path"][0], train["path"][1], test["path"][0])],
                           "task": "gender", "suggested_label": "Female", "is_label_issue": True})
    listed.to_csv(tmp_path / "label_issues.csv", index=False)
    config.exclude = [str(tmp_path / "label_issues.csv")]
    again = prepare_data(config, ["gender", "race"], 32, 16, seed=0, out_dir=tmp_path, progress=False)
    masked = again.splits["train"].frame.set_index("path")
    assert masked.loc[[train["path"][0], train["path"][1]], "gender"].isna().all()
    assert again.splits["test"].frame.set_index("path").at[test["path"][0], "gender"] == test["gender"][0]
    unlabelled = [(run.splits["train"].targets["gender"] < 0).sum() for run in (first, again)]
    assert unlabelled[1] == unlabelled[0] + 2
    actions = pd.read_csv(tmp_path / "data_actions.csv")
    assert len(actions) == 2 and set(actions["action"]) == {"label masked"}


def test_downweight_lowers_only_the_flagged_train_labels(tmp_path):
    frame = _frame(tmp_path / "data", n=60)
    frame["split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    rel = lambda i: f"faces/img{i:04d}.jpg"  # noqa: E731
    pd.DataFrame({"path": [rel(1), rel(2), rel(55)], "task": ["gender", "race", "gender"],
                  "is_label_issue": [True, True, True]}).to_csv(tmp_path / "label_issues.csv", index=False)
    weighted, actions = apply_actions(frame, tmp_path / "data", downweight=[tmp_path / "label_issues.csv"],
                                      downweight_factor=0.25)
    assert len(weighted) == len(frame) and weighted["gender"].equals(frame["gender"])  # labels kept
    assert weighted["label_weight:gender"].tolist() == [1.0] + [0.25] + [1.0] * 58  # row 55 is a test row
    assert weighted["label_weight:race"].tolist() == [1.0] * 2 + [0.25] + [1.0] * 57
    assert list(actions["action"]) == ["down-weighted"] * 2 and list(actions["weight"]) == [0.25, 0.25]
    with pytest.raises(ValueError, match="downweight_factor"):
        apply_actions(frame, tmp_path / "data", downweight=[tmp_path / "label_issues.csv"], downweight_factor=1.5)


def test_a_down_weighted_label_weighs_its_factor_in_the_loss_and_nothing_else():
    """Per-task row weights: weight 0 on one gender label gives the loss without that row, the
    other tasks keep it; 0.5 gives the weighted mean."""
    import torch

    from facefair.tasks import make_tasks
    from facefair.train.losses import MultiTaskLoss, label_weights
    from facefair.models.heads import build_heads
    tasks = make_tasks(["gender", "age"], "race5")
    loss_fn = MultiTaskLoss(tasks, build_heads(8, tasks, 0.0))
    torch.manual_seed(0)
    outputs = {"gender": torch.randn(4, 2), "age": torch.rand(4) * 60}
    targets = {"gender": torch.tensor([0, 1, 1, 0]), "age": torch.tensor([20.0, 30.0, 40.0, 50.0])}
    frame = pd.DataFrame({"label_weight:gender": [1.0, 0.0, 1.0, 1.0]})
    weights = label_weights(frame, tasks)
    assert weights["age"].tolist() == [1.0] * 4
    _, parts = loss_fn(outputs, targets, weights)
    keep = [0, 2, 3]
    _, without = loss_fn({k: v[keep] for k, v in outputs.items()}, {k: v[keep] for k, v in targets.items()})
    _, plain = loss_fn(outputs, targets)
    assert parts["gender"] == pytest.approx(without["gender"]) and parts["gender"] != pytest.approx(plain["gender"])
    assert parts["age"] == pytest.approx(plain["age"])
    half = label_weights(pd.DataFrame({"label_weight:gender": [1.0, 0.5, 1.0, 1.0]}), tasks)
    per_row = torch.nn.functional.cross_entropy(outputs["gender"], targets["gender"], reduction="none")
    expected = float((per_row * torch.tensor([1.0, 0.5, 1.0, 1.0])).sum() / 3.5)
    assert loss_fn(outputs, targets, half)[1]["gender"] == pytest.approx(expected, rel=1e-5)
