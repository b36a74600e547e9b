import shutil

import numpy as np
import pandas as pd

from facefair.data.readers import (concat_tables, detect_columns, parse_utkface_name, read_dataset,
                                   read_fairface, read_imagefolder, read_label_csv, read_utkface)


def test_utkface_name_parsing():
    assert parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg") == (
        {"age": 26.0, "gender": "Female", "race": "Asian"}, None)
    # the real defects named in the shared data README
    labels, problem = parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg")
    assert labels == {"age": 39.0, "gender": "Female", "race": None} and "race" in problem
    labels, problem = parse_utkface_name("61_3_20170109150557335jpg.chip.jpg")
    assert labels["age"] == 61 and labels["gender"] is None and labels["race"] is None
    assert parse_utkface_name("45_0_0_20170116232725357jpg.chip.jpg") == (
        {"age": 45.0, "gender": "Male", "race": "White"}, None)
    assert parse_utkface_name("garbage.jpg")[1] is not None


def test_utkface_real_folder(utkface_dir):
    table = read_utkface(utkface_dir)
    frame = table.frame
    assert len(frame) == len(list(utkface_dir.iterdir()))
    assert table.race_scheme == "race5"
    # malformed names are reported and kept for the tasks they do label
    bad = [p for p in table.problems if "39_1_20170116174525125" in p.where]
    assert bad and "race" in bad[0].message
    row = frame[frame["path"].str.contains("39_1_20170116174525125")].iloc[0]
    assert row["age"] == 39 and row["gender"] == "Female" and row["race"] is None and row["age_group"] == "30-39"
    glued = frame[frame["path"].str.contains(r"\d{17}jpg\.chip", regex=True)]
    assert len(glued) >= 1 and glued["race"].notna().all()
    assert set(frame["gender"].dropna()) == {"Male", "Female"}
    assert frame["age"].between(1, 116).all()
    assert len(table.problems) == int(frame[["gender", "race"]].isna().any(axis=1).sum())


def test_fairface_label_files(fairface_dir, tmp_path):
    table = read_fairface([fairface_dir / "fairface_label_train.csv", fairface_dir / "fairface_label_val.csv"],
                          tmp_path, require_images=False)
    assert len(table.frame) == 86744 + 10954
    assert table.race_scheme == "race7" and not table.problems
    assert set(table.frame["age_group"]) == {"0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"}
    assert table.frame["age"].isna().all()


def test_excel_mangled_csv_matches_original(fairface_dir):
    original = read_label_csv(fairface_dir / "fairface_label_val.csv", require_images=False).frame
    mangled = read_label_csv(fairface_dir / "excel-mangled" / "fairface_label_val.csv", require_images=False)
    assert not mangled.problems
    for column in ("age_group", "gender", "race"):
        assert (mangled.frame[column].to_numpy() == original[column].to_numpy()).all(), column


def test_fairface_image_root_layouts(fairface_dir, utkface_dir, tmp_path):
    """FairFace CSV paths are 'train/1.jpg'; users keep images under root/, root/images/ or flat."""
    labels = pd.read_csv(fairface_dir / "fairface_label_val.csv").head(5)
    source = sorted(utkface_dir.iterdir())[:5]
    for layout in ("root", "images", "flat"):
        root = tmp_path / layout
        for rel, src in zip(labels["file"], source):
            target = {"root": root / rel, "images": root / "images" / rel, "flat": root / "val" / rel.split("/")[-1]}[layout]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
        csv = tmp_path / f"{layout}.csv"
        labels.to_csv(csv, index=False)
        table = read_fairface([csv], root)
        assert len(table.frame) == 5 and not table.problems, layout


def test_missing_images_are_named_and_counted(fairface_dir, utkface_dir, tmp_path):
    labels = pd.read_csv(fairface_dir / "fairface_label_val.csv").head(4)
    (tmp_path / "val").mkdir()
    for rel, src in zip(labels["file"][:3], sorted(utkface_dir.iterdir())):
        shutil.copy(src, tmp_path / rel)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table = read_label_csv(tmp_path / "labels.csv", tmp_path)
    assert len(table.frame) == 3
    assert len(table.problems) == 1 and "labels.csv:5" in table.problems[0].where
    assert "not found" in table.problems[0].message


def test_generic_csv_autodetect_and_unknown_labels(utkface_dir, tmp_path):
    files = sorted(utkface_dir.iterdir())[:3]
    pd.DataFrame({"Image_Path": [str(f) for f in files], "Sex": ["m", "Female", "robot"],
                  "Ethnicity": ["white", "Black", "Asian"], "age": ["34", "70+", "19-Oct"]}).to_csv(tmp_path / "x.csv", index=False)
    assert detect_columns(["Image_Path", "Sex", "Ethnicity", "age"]) == {
        "path": "Image_Path", "gender": "Sex", "race": "Ethnicity", "age_raw": "age"}
    table = read_dataset(tmp_path / "x.csv")
    frame = table.frame
    assert list(frame["gender"]) == ["Male", "Female", None]
    assert frame["age"].iloc[0] == 34 and np.isnan(frame["age"].iloc[1])
    assert list(frame["age_group"]) == ["30-39", "70+", "10-19"]
    assert any("robot" in p.message and "x.csv:4" in p.where for p in table.problems)


def test_imagefolder_tree(utkface_dir, tmp_path):
    """FineFACE's layout: train/CLASS/*.jpg and test/CLASS/*.jpg, the class folder labels gender."""
    files = sorted(utkface_dir.iterdir())[:8]
    for i, f in enumerate(files):
        split, cls = ("train" if i < 6 else "test"), ("male" if i % 2 else "female")
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / split / cls / f.name)
    table = read_imagefolder(tmp_path)
    assert len(table.frame) == 8
    assert set(table.frame["gender"]) == {"Male", "Female"} and table.frame["race"].isna().all()
    assert list(table.frame["split"].value_counts().sort_index()) == [2, 6]
    # A class folder the vocabulary does not read is reported with an image in it and the fix.
    (tmp_path / "train" / "blue").mkdir()
    shutil.copy(files[0], tmp_path / "train" / "blue" / "x.jpg")
    table = read_imagefolder(tmp_path)
    [problem] = table.problems
    assert "blue/x.jpg" in problem.where and "--label-map gender:blue=LABEL" in problem.message


def test_merge_utk_and_fairface_maps_race_and_keeps_missing_tasks(utkface_dir, fairface_dir, tmp_path):
    utk = read_utkface(utkface_dir)
    ff = read_label_csv(fairface_dir / "fairface_label_val.csv", require_images=False, dataset="fairface")
    merged = concat_tables([utk, ff])
    assert merged.race_scheme == "race5"
    frame = merged.frame
    fair = frame[frame["dataset"] == "fairface"]
    assert set(fair["race"].dropna()) <= {"White", "Black", "Asian", "Indian", "Others"}
    assert fair["age"].isna().all() and fair["age_group"].notna().all()
    assert (fair["race"] == "Others").sum() == ff.frame["race"].isin(["Latino_Hispanic", "Middle Eastern"]).sum()


def test_dataset_race_scheme_does_not_depend_on_the_subset(utkface_dir, fairface_dir, tmp_path):
    """A UTKFace subset without 'Others' is still race5, so merging keeps FairFace's Latino/ME as Others."""
    for f in sorted(utkface_dir.glob("*_*_[0-3]_*.jpg.chip.jpg"))[:6]:
        shutil.copy(f, tmp_path / f.name)
    utk = read_utkface(tmp_path)
    assert utk.race_scheme == "race5" and "Others" not in set(utk.frame["race"])
    ff = read_label_csv(fairface_dir / "fairface_label_val.csv", require_images=False, dataset="fairface",
                        race_scheme="race7")
    merged = concat_tables([utk, ff])
    assert merged.race_scheme == "race5" and (merged.frame["race"] == "Others").sum() > 0


def test_fairface_detection_and_labels_outside_the_declared_scheme(utkface_dir, tmp_path):
    files = sorted(utkface_dir.iterdir())[:2]
    plain = pd.DataFrame({"file": [str(f) for f in files], "age": ["30", "40"], "gender": ["m", "f"],
                          "race": ["Asian", "Others"]})
    plain.to_csv(tmp_path / "plain.csv", index=False)
    table = read_dataset(tmp_path / "plain.csv")  # UTK-style names in a FairFace-like header: a plain CSV
    assert table.race_scheme == "race5" and list(table.frame["race"]) == ["Asian", "Others"]
    plain.assign(service_test="True").to_csv(tmp_path / "ff.csv", index=False)
    table = read_dataset(tmp_path / "ff.csv")  # FairFace's own file: race7, other names reported
    assert table.race_scheme == "race7" and table.frame["race"].isna().all()
    assert sum("no race7 class" in p.message for p in table.problems) == 2
