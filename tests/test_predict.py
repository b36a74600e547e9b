"""`facefair predict`: one command for cropped faces and (``--detect``) raw photos, every option
meaning the same in both modes, OUT/predictions.csv (+ OUT/no_face.csv) inside an output folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefair.cli import main
from facefair.mitigate.thresholds import GroupRule, GroupThresholds
from facefair.predict import group_column_for


def _thresholds(tmp_path, attribute: str, races) -> str:
    """A thresholds.json that flips every gender decision to Female (threshold above any score), so
    that applying it is visible in every row."""
    never = GroupRule(p0=1.0, operator0=">", threshold0=2.0, p1=0.0, operator1=">", threshold1=2.0)
    rules = GroupThresholds(task="gender", attribute=attribute, classes=["Male", "Female"],
                            constraint="equalized_odds", objective="accuracy_score",
                            rules={race: never for race in races})
    path = tmp_path / f"thresholds-{attribute}.json"
    path.write_text(rules.to_json())
    return str(path)


def _races(run) -> list[str]:
    from facefair.models.multitask import load_model
    return list(next(t for t in load_model(run).tasks if t.name == "race").classes)


def test_group_column_of_thresholds_fitted_on_a_prediction_is_used_as_it_is():
    rule = GroupRule(p0=1.0, operator0=">", threshold0=0.5, p1=0.0, operator1=">", threshold1=0.5)
    fitted_on_pred = GroupThresholds("gender", "race_pred", ["Male", "Female"], "equalized_odds", "accuracy_score",
                                     {"White": rule})
    assert group_column_for(fitted_on_pred) == "race_pred"  # not race_pred_pred
    fitted_on_truth = GroupThresholds("gender", "race", ["Male", "Female"], "equalized_odds", "accuracy_score",
                                      {"White": rule})
    assert group_column_for(fitted_on_truth) == "race_pred"
    assert group_column_for(fitted_on_truth, "my_race") == "my_race"


def test_cropped_faces_with_thresholds_bf16_and_image_root(tiny_run, utk_sample, tmp_path, capsys):
    names = sorted(os.listdir(utk_sample))[:6]
    listing = tmp_path / "faces.csv"
    pd.DataFrame({"file": names}).to_csv(listing, index=False)  # relative paths: --image-root resolves them
    thresholds = _thresholds(tmp_path, "race_pred", _races(tiny_run))
    assert main(["predict", str(tiny_run), str(listing), "--image-root", str(utk_sample), "--out", str(tmp_path / "o"),
                 "--thresholds", thresholds, "--bf16", "--device", "cpu", "--no-progress"]) == 0
    frame = pd.read_csv(tmp_path / "o" / "predictions.csv")
    assert len(frame) == 6 and frame["error"].isna().all()
    assert (frame["gender_pred"] == "Male").all() and "gender_pred_raw" in frame
    assert frame["gender_postproc_pmf"].notna().all()


def test_detect_mtcnn_with_thresholds_and_bf16(tiny_run, utkface_dir, tmp_path):
    """The command the issue names: RUN FOLDER --detect mtcnn --thresholds T.json --bf16."""
    pytest.importorskip("facenet_pytorch")
    from photo_compose import compose_set

    faces = [str(utkface_dir / n) for n in sorted(os.listdir(utkface_dir))[::401][:6] if n.endswith(".jpg")]
    compose_set(faces, tmp_path / "photos", photos=2, faces_per_photo=(2, 2), no_face_photos=1, seed=2)
    thresholds = _thresholds(tmp_path, "race", _races(tiny_run))
    out = tmp_path / "out"
    assert main(["predict", str(tiny_run), str(tmp_path / "photos"), "--detect", "mtcnn", "--thresholds", thresholds,
                 "--bf16", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) >= 3 and frame["face_index"].notna().all()
    assert (frame["gender_pred"] == "Male").all() and frame["gender_postproc_pmf"].notna().all()
    probabilities = frame[[c for c in frame if c.startswith("race_prob_")]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-3)
    assert list(pd.read_csv(out / "no_face.csv")["path"].map(os.path.basename)) == ["noface_000.jpg"]
    record = json.loads((out / "predict.json").read_text())
    assert record["detect"] == "mtcnn" and record["thresholds"] == str(Path(thresholds).resolve())
    assert record["counts"] == {"photos": 3, "faces": len(frame), "without_face": 1}


@pytest.mark.parametrize("argv, message", [
    (["--min-face", "40"], "--min-face only apply to raw photos"),
    (["--detect", "dlib-hog", "--decode-workers", "2"], "--detect-workers"),
    (["--thresholds", "missing.json"], "missing.json not found"),
])
def test_misused_flags_are_one_line(tiny_run, utk_sample, tmp_path, capsys, argv, message):
    assert main(["predict", str(tiny_run), str(utk_sample), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "predictions.csv").exists()
