"""benchmarks/mitigation.py: the data-quality variants hold out train rows named by ``facefair clean``'s
files, matched as ``facefair.data.exclusions`` matches them (by path under the data folder), never a
val or test row that merely shares a file name; and ``analyse`` runs end to end on tiny runs."""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mitigation  # noqa: E402


def _args(tmp_path, **extra):
    data = tmp_path / "fairface"
    data.mkdir(exist_ok=True)
    splits = pd.DataFrame({"path": ["train/1.jpg", "train/2.jpg", "train/3.jpg", "val/1.jpg", "test/1.jpg",
                                    "test/2.jpg"],
                           "split": ["train", "train", "train", "val", "test", "test"]})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    issues = pd.DataFrame({"path": ["val/1.jpg", "train/2.jpg", "train/3.jpg"], "task": ["gender", "gender", "race"],
                           "is_label_issue": [True, True, True]})
    issues.to_csv(tmp_path / "label_issues.csv", index=False)
    # train/3.jpg and test/2.jpg are one face twice; val/1.jpg's copy is train/1.jpg
    pd.DataFrame({"path": ["train/3.jpg", "test/2.jpg", "train/1.jpg", "val/1.jpg"],
                  "cluster": [0, 0, 1, 1]}).to_csv(tmp_path / "duplicates.csv", index=False)
    return argparse.Namespace(data=str(data), splits=str(tmp_path / "splits.csv"), train_limit=0,
                              out_dir=str(tmp_path / "runs"), label_issues=str(tmp_path / "label_issues.csv"),
                              duplicates=str(tmp_path / "duplicates.csv"), **extra)


def _held(path) -> list[str]:
    frame = pd.read_csv(path)
    return sorted(frame.loc[frame["split"] == "excluded", "path"])


def test_clean_labels_holds_out_the_flagged_train_gender_labels_and_no_namesake(tmp_path):
    args = _args(tmp_path)
    # val/1.jpg is flagged, and train/1.jpg shares its file name: neither may be held out
    assert _held(mitigation.splits_for(args, "clean-labels", 0)) == ["train/2.jpg"]
    drawn = _held(mitigation.splits_for(args, "random-drop", 0))
    assert len(drawn) == 1 and drawn[0].startswith("train/")


def test_dedup_holds_out_the_train_rows_whose_copy_is_in_val_or_test(tmp_path):
    args = _args(tmp_path)
    assert _held(mitigation.splits_for(args, "dedup", 0)) == ["train/1.jpg", "train/3.jpg"]


def _run(folder: Path, correct: np.ndarray, paths: list[str]) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(str(folder)))
    truth = np.where(np.arange(len(paths)) % 2, "Male", "Female")
    pred = np.where(correct, truth, np.where(truth == "Male", "Female", "Male"))
    male = np.clip(np.where(pred == "Male", 0.8, 0.2) + rng.normal(0, 0.05, len(paths)), 0, 1)
    races = np.array(["White", "Black", "Asian", "Indian", "Others"])[np.arange(len(paths)) % 5]
    pd.DataFrame({"path": paths, "race": races, "gender": truth, "gender_true": truth, "gender_pred": pred,
                  "gender_prob_Female": 1 - male, "gender_prob_Male": male}).to_csv(folder / "predictions.csv",
                                                                                   index=False)


def test_analyse_writes_the_paired_table_and_page(tmp_path):
    paths = [f"/data/{i}.jpg" for i in range(200)]
    rng = np.random.default_rng(0)
    for method, accuracy in (("baseline", 0.8), ("reweight", 0.85)):
        for seed in (0, 1):
            _run(tmp_path / "runs" / method / f"s{seed}", rng.random(200) < accuracy, paths)
    results = tmp_path / "results"
    mitigation.main(["analyse", "--out-dir", str(tmp_path / "runs"), "--results", str(results),
                     "--methods", "baseline", "reweight", "--seeds", "0", "1", "--bootstrap", "50",
                     "--min-group-size", "10"])
    table = pd.read_csv(results / "mitigation.csv")
    assert set(table.method) == {"baseline", "reweight"}
    page = (results / "mitigation.md").read_text()
    assert "| reweight | s0 s1 |" in page and "compare.csv" in page
    assert (results / "mitigation" / "compare.csv").is_file()
