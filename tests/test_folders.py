"""Datasets laid out as people lay them out: nested label folders, other datasets' vocabularies,
a user's label map, and errors that name a step to take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefair import labels as L
from facefair.data.readers import read_dataset, read_imagefolder


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_tree(root: Path, layout: dict[tuple[str, ...], int]) -> Path:
    """``{("female", "asian"): 2}`` -> root/female/asian/0.jpg, 1.jpg."""
    seed = 0
    for folders, count in layout.items():
        for i in range(count):
            seed += 1
            _image(root.joinpath(*folders, f"{i}.jpg"), seed)
    return root


#: MEBeauty's layout and vocabulary: gender, then ethnicity.
MEBEAUTY = {("female", "asian"): 2, ("female", "caucasian"): 2, ("male", "black"): 1, ("male", "hispanic"): 1,
            ("female", "mideastern"): 1, ("male", "indian"): 1}


def test_gender_then_race_folders_are_detected_and_mapped_to_race5(tmp_path):
    table = read_dataset(make_tree(tmp_path / "mb", MEBEAUTY))
    assert table.layout == ["gender", "race"]
    assert table.race_scheme == "race5"  # "asian" cannot be race7; hispanic and mideastern become Others
    frame = table.frame.assign(folder=lambda f: f["path"].map(lambda p: "/".join(Path(p).parts[-3:-1])))
    truth = dict(zip(frame["folder"], zip(frame["gender"], frame["race"])))
    assert truth == {"female/asian": ("Female", "Asian"), "female/caucasian": ("Female", "White"),
                     "male/black": ("Male", "Black"), "male/hispanic": ("Male", "Others"),
                     "female/mideastern": ("Female", "Others"), "male/indian": ("Male", "Indian")}
    assert not table.problems


def test_race_then_gender_and_fairface_spellings_keep_race7(tmp_path):
    root = make_tree(tmp_path / "ff", {("East_Asian", "Man"): 1, ("Middle Eastern", "Woman"): 1,
                                       ("latino", "man"): 1, ("african-american", "woman"): 1})
    table = read_imagefolder(root)
    assert table.layout == ["race", "gender"] and table.race_scheme == "race7"
    assert sorted(table.frame["race"]) == ["Black", "East Asian", "Latino_Hispanic", "Middle Eastern"]
    assert sorted(table.frame["gender"]) == ["Female", "Female", "Male", "Male"]


def test_a_level_that_is_no_label_is_left_out_and_splits_are_kept(tmp_path):
    root = make_tree(tmp_path / "ids", {("train", "white", "person1"): 2, ("test", "black", "person2"): 1})
    table = read_dataset(root)
    assert table.layout == ["race", "-"]
    assert sorted(table.frame["split"]) == ["test", "train", "train"]
    assert table.frame["gender"].isna().all()


def test_explicit_layout_and_its_errors(tmp_path):
    pets = make_tree(tmp_path / "pets", {("cat", "a"): 1, ("dog", "b"): 1})
    with pytest.raises(ValueError, match=r"no folder level reads as gender.*cat, dog.*--layout gender/race"):
        read_dataset(pets)
    root = make_tree(tmp_path / "x", {("a", "f"): 1, ("b", "m"): 1})
    assert read_dataset(root).layout == ["-", "gender"]
    table = read_dataset(root, layout="-/gender", label_map=[])
    assert sorted(table.frame["gender"]) == ["Female", "Male"]
    with pytest.raises(ValueError, match=r"names 3 folder levels but the images sit 2 deep.*--layout"):
        read_dataset(root, layout="gender/race/age_group")
    with pytest.raises(ValueError, match="'colour' is no attribute"):
        read_dataset(root, layout="colour/gender")


def test_unknown_folder_is_reported_with_file_accepted_spellings_and_the_fix(tmp_path):
    root = make_tree(tmp_path / "u", {("female", "asian"): 1, ("female", "polynesian"): 2, ("male", "white"): 1})
    table = read_dataset(root)
    assert table.layout == ["gender", "race"]
    [problem] = table.problems
    assert problem.where.endswith("polynesian/0.jpg") and "2 images" in problem.message
    assert "caucasian" in problem.message and "--label-map race:polynesian=LABEL" in problem.message
    assert table.frame["race"].isna().sum() == 2 and table.frame["gender"].notna().all()  # kept for gender

    mapped = read_dataset(root, label_map=["race:Polynesian=Southeast Asian"])
    assert not mapped.problems and mapped.race_scheme == "race5"  # next to race5 "asian": read as race5
    assert set(mapped.frame["race"]) == {"Asian", "White"}


def test_label_map_yaml_file_and_its_errors(tmp_path):
    root = make_tree(tmp_path / "y", {("hombre", "blanco"): 1, ("mujer", "negro"): 1})
    label_map = tmp_path / "map.yaml"
    label_map.write_text("gender:\n  hombre: male\n  mujer: female\nrace:\n  blanco: White\n  negro: black\n")
    table = read_dataset(root, label_map=[str(label_map)])
    assert table.layout == ["gender", "race"]
    assert sorted(zip(table.frame["gender"], table.frame["race"])) == [("Female", "Black"), ("Male", "White")]
    label_map.write_text("race:\n  blanco: whitish\n")
    with pytest.raises(ValueError, match="'whitish' is no race label; accepted: .*caucasian"):
        read_dataset(root, label_map=[str(label_map)])
    with pytest.raises(FileNotFoundError, match="ATTRIBUTE:RAW=LABEL"):
        read_dataset(root, label_map=[str(tmp_path / "missing.yaml")])


def test_csv_labels_go_through_the_label_map_and_unknowns_name_the_fix(tmp_path):
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg", 1)
    (tmp_path / "labels.csv").write_text("file,gender,race\na.jpg,f,mideastern\nb.jpg,m,klingon\n")
    table = read_dataset(tmp_path / "labels.csv")
    assert list(table.frame["race"].fillna("?")) == ["Middle Eastern", "?"]
    assert any("klingon" in p.message and "--label-map race:klingon=LABEL" in p.message for p in table.problems)
    assert list(read_dataset(tmp_path / "labels.csv", label_map=["race:klingon=white"]).frame["race"]) == [
        "Middle Eastern", "White"]


def test_data_config_carries_layout_and_label_map(tmp_path):
    from facefair.config import DataConfig
    from facefair.data.prepare import load_table

    root = make_tree(tmp_path / "c", {("p1", "f"): 1, ("p2", "m"): 1})
    table = load_table(DataConfig(data=str(root), layout="-/gender"))
    assert sorted(table.frame["gender"]) == ["Female", "Male"]


@pytest.mark.parametrize("spelling, canonical", [
    ("caucasian", "White"), ("African", "Black"), ("african american", "Black"), ("Hispanic", "Latino_Hispanic"),
    ("latino", "Latino_Hispanic"), ("mideastern", "Middle Eastern"), ("middle-eastern", "Middle Eastern"),
    ("East Asian", "East Asian"), ("southeast_asian", "Southeast Asian"), ("indian", "Indian"), ("asian", "Asian"),
    ("BLACK", "Black"), ("white", "White")])
def test_other_datasets_race_vocabularies(spelling, canonical):
    assert L.normalize_race(spelling) == canonical


def test_schemes_are_compared_on_the_one_both_share():
    assert L.race_scheme_of(["Asian", "Latino_Hispanic", "Middle Eastern", "White"]) == "race5"
    assert L.race_scheme_of(["East Asian", "Latino_Hispanic"]) == "race7"
    assert L.shared_scheme("race7", "race5") == "race5"
    assert L.shared_scheme("race4", "race5") == "race5"  # race4 labels are race5 labels as they stand
    assert L.map_race("Asian", "race4", "race5") == "Asian"
    assert L.map_race("Middle Eastern", "race5", "race4") is None  # no faithful race4 class
    with pytest.raises(ValueError, match="compare on race5"):
        L.map_race("Asian", "race5", "race7")


def test_evaluate_and_predict_read_nested_folders_with_no_flags(tiny_run, utk_sample, tmp_path, capsys):
    """The defect of issue 30: `evaluate RUN --data gender/race-folders` stopped with "class folders
    [...] match no task; pass task=..." and no flag took task=.  Now it reads both levels, and
    predict keeps the folders' labels beside its predictions."""
    import shutil

    import pandas as pd

    from facefair.cli import main

    faces = sorted(utk_sample.iterdir())[:12]
    folders = [("female", "asian"), ("male", "caucasian"), ("female", "mideastern"), ("male", "african")]
    for i, face in enumerate(faces):
        target = tmp_path / "other" / Path(*folders[i % 4]) / face.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(face, target)
    out = tmp_path / "ev"
    assert main(["evaluate", str(tiny_run), "--data", str(tmp_path / "other"), "--out", str(out), "--no-tta",
                 "--no-framing-check"]) == 0
    assert "12 images, label folders read as gender/race, race labels race5" in capsys.readouterr().out
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 12 and set(table["race_true"]) == {"Asian", "White", "Others", "Black"}
    assert set(table["gender_true"]) == {"Female", "Male"}
    assert main(["predict", str(tiny_run), str(tmp_path / "other"), "--out", str(tmp_path / "pr"), "--no-tta",
                 "--no-framing-check", "--no-progress"]) == 0
    predicted = pd.read_csv(tmp_path / "pr" / "predictions.csv")
    assert {"race", "gender", "race_true", "gender_true", "race_pred"} <= set(predicted.columns)
    assert predicted["race_true"].notna().all()
    assert main(["evaluate", str(tiny_run), "--data", str(tmp_path / "other"), "--layout", "gender/race/age",
                 "--out", str(out)]) == 2  # one line naming --layout, exit code 2
