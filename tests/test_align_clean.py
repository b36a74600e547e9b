"""Dataset cleaning (images without a face are flagged or dropped, with counts) and
`facefair merge` (UTKFace + FairFace in one table)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facefair.align.clean import CleanConfig, clean_table
from photo_compose import background
from facefair.align.detectors import DetectorConfig, available_backends
from facefair.data.readers import read_dataset, read_utkface


@pytest.fixture(scope="module")
def dirty_utk(utkface_dir, tmp_path_factory):
    """Ten real UTKFace chips plus two faceless images and a truncated file under UTKFace names."""
    out = tmp_path_factory.mktemp("dirty_utk")
    names = [n for n in sorted(os.listdir(utkface_dir)) if n.endswith(".jpg")]
    # One of race "Others" (code 4): the reader infers the race scheme from the values it sees.
    others = next(n for n in names[5000:] if n.split("_")[2:3] == ["4"])
    for name in [*names[::1777][:9], others]:
        shutil.copy(utkface_dir / name, out / name)
    rng = np.random.default_rng(0)
    background(200, 200, rng).save(out / "30_0_0_20990101000000001.jpg.chip.jpg")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(out / "40_1_1_20990101000000002.jpg.chip.jpg")
    good = next(out.glob("*.jpg")).read_bytes()
    (out / "50_1_2_20990101000000003.jpg.chip.jpg").write_bytes(good[:300])  # truncated JPEG
    return out


@pytest.mark.skipif("dlib-hog" not in available_backends(), reason="dlib not installed")
def test_clean_flags_then_drops_faceless_images(dirty_utk):
    table = read_utkface(dirty_utk)
    flagged = clean_table(table, DetectorConfig(backend="dlib-hog"), CleanConfig(action="flag"), progress=False)
    frame = flagged.table.frame
    assert len(frame) == 13 and {"faces_found", "face_score", "face_status"} <= set(frame.columns)
    status = dict(zip(frame["path"].map(os.path.basename), frame["face_status"]))
    assert status["30_0_0_20990101000000001.jpg.chip.jpg"] == "no_face"
    assert status["40_1_1_20990101000000002.jpg.chip.jpg"] == "no_face"
    assert status["50_1_2_20990101000000003.jpg.chip.jpg"] == "unreadable"
    counts = flagged.counts
    assert counts["images"] == 13 and counts["unreadable"] == 1 and counts["dropped"] == 0
    # The real faces: padded with a border, HOG finds (nearly) all of them.
    assert counts["with_face"] >= 9 and counts["no_face"] == 13 - 1 - counts["with_face"]
    assert counts["no_face_by_dataset"] == {"utkface": 13 - counts["with_face"]}

    dropped = clean_table(table, DetectorConfig(backend="dlib-hog"), CleanConfig(action="drop"), progress=False)
    assert len(dropped.table.frame) == counts["with_face"] == 13 - dropped.counts["dropped"]
    assert (dropped.table.frame["face_status"] == "face").all()
    assert "dropped" in dropped.summary()


@pytest.mark.skipif("dlib-hog" not in available_backends(), reason="dlib not installed")
def test_clean_cli_writes_a_table_that_reads_back(dirty_utk, tmp_path, capsys):
    from facefair.cli import main

    out = tmp_path / "clean.csv"
    assert main(["clean", str(dirty_utk), "--out", str(out), "--action", "drop", "--detect", "dlib-hog",
                 "--no-progress"]) == 0
    assert "without" in capsys.readouterr().out
    cleaned = read_dataset(out)  # a plain label CSV again, usable as --data
    assert 9 <= len(cleaned.frame) <= 10 and cleaned.frame["age"].notna().all()
    listed = pd.read_csv(tmp_path / "clean.no_face.csv")
    assert len(listed) == 13 - len(cleaned.frame)


def test_merge_utkface_and_fairface(dirty_utk, fairface_dir, tmp_path, capsys):
    """UTKFace (exact ages, race5) + FairFace labels (age groups, race7): one table, race mapped
    to race5, FairFace's missing exact age left empty (masked), a dataset column."""
    from facefair.cli import main

    val = tmp_path / "fairface_val.csv"
    pd.read_csv(fairface_dir / "fairface_label_val.csv").head(50).to_csv(val, index=False)
    assert main(["merge", str(dirty_utk), str(val), "--out", str(tmp_path / "merged"), "--no-require-images"]) == 0
    report = json.loads(capsys.readouterr().out)
    out = tmp_path / "merged" / "labels.csv"
    assert report["table"] == str(out)
    merged = pd.read_csv(out)
    assert report["race_scheme"] == "race5" and report["images"] == len(merged) == 13 + 50
    assert set(merged["dataset"]) == {"utkface", "fairface"}
    fair = merged[merged["dataset"] == "fairface"]
    assert fair["age"].isna().all() and fair["age_group"].notna().all()
    assert set(fair["race"].dropna()) <= {"White", "Black", "Asian", "Indian", "Others"}
    utk = merged[merged["dataset"] == "utkface"]
    assert utk["age"].notna().all() and utk["age_group"].notna().all()
    assert report["labelled_by_dataset"]["fairface"]["age"] == 0
