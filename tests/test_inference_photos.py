"""Predict on raw photos: every face found, one row per face, photos without a face listed."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from photo_compose import compose_set, match_detections
from facefair.align.detectors import DetectorConfig, available_backends, make_detector
from facefair.inference import InferenceSettings
from facefair.inference.engine import predict_files
from facefair.inference.photos import FAIRFACE_COLUMNS, predict_photos
from facefair.models.multitask import load_model

pytestmark = pytest.mark.skipif("dlib-hog" not in available_backends(), reason="dlib not installed")


@pytest.fixture(scope="module")
def photos(utkface_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("photos")
    faces = [str(utkface_dir / n) for n in sorted(os.listdir(utkface_dir))[::113] if n.endswith(".jpg")]
    truth = compose_set(faces, out, photos=5, no_face_photos=1, seed=11)
    (out / "broken.jpg").write_bytes(b"not an image")
    return out, truth


def test_predict_photos_one_row_per_face(tiny_run, photos):
    out, truth = photos
    model = load_model(tiny_run / "best.pt", "cpu")
    paths = sorted(str(p) for p in out.glob("*.jpg"))
    detector = make_detector(DetectorConfig(backend="dlib-hog"))
    faces, no_face = predict_photos(model, paths, detector, InferenceSettings(batch_size=4, min_face=0, max_side=800),
                                    progress=False)
    matched = match_detections(truth, faces)
    assert matched["detected"].mean() >= 0.8
    assert len(faces) == len(matched[matched["detected"]]) + matched.attrs["false_positives"]
    assert sorted(os.path.basename(p) for p in no_face) == ["broken.jpg", "noface_000.jpg"]
    # One row per face, numbered within its photo, boxes in the photo.
    assert (faces.groupby("path")["face_index"].apply(lambda s: list(s) == list(range(len(s))))).all()
    assert ((faces["box_x1"] > faces["box_x0"]) & (faces["box_x1"] <= 640)).all()
    for task in model.tasks:
        if task.kind == "classification":
            probabilities = faces[[f"{task.name}_prob_{c}" for c in task.classes]].to_numpy()
            np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-4)
            assert faces[f"{task.name}_pred"].isin(task.classes).all()
        else:
            assert faces["age_pred"].notna().all()
    # FairFace predict.py's columns, where the model has the task.
    assert set(FAIRFACE_COLUMNS) <= set(faces.columns)
    assert (faces["gender_fair"] == faces["gender_pred"]).all() and (faces["race_fair"] == faces["race_pred"]).all()
    scores = faces["gender_scores_fair"].iloc[0]
    assert scores.startswith("[") and len(scores.strip("[]").split()) == 2
    assert faces["race4_fair"].isin(["White", "Black", "Asian", "Indian"]).all()


def test_chips_get_the_same_prediction_as_saved_files(tiny_run, photos, tmp_path):
    """A chip predicted in memory equals the same chip saved and run through `facefair predict`
    (same resize, same normalisation), up to JPEG loss."""
    out, _ = photos
    model = load_model(tiny_run / "best.pt", "cpu")
    paths = sorted(str(p) for p in out.glob("photo_*.jpg"))[:2]
    faces, _ = predict_photos(model, paths, "dlib-hog", chip_dir=tmp_path, progress=False)
    again = predict_files(model, faces["face_name_align"].tolist(), workers=0, progress=False)
    assert faces["face_name_align"].map(os.path.exists).all()
    np.testing.assert_allclose(faces["gender_prob_Male"], again["gender_prob_Male"], atol=0.05)


def test_run_predict_detect_and_cli(tiny_run, photos, tmp_path, capsys):
    from facefair.cli import main
    from facefair.predict import PredictConfig, run_predict

    out, _ = photos
    faces = run_predict(PredictConfig(str(tiny_run / "best.pt"), str(out), out=str(tmp_path / "api"), detect="dlib-hog",
                                      batch_size=8, device="cpu", detect_workers=2, progress=False))
    written = pd.read_csv(tmp_path / "api" / "predictions.csv")
    assert len(written) == len(faces) > 0
    no_face = pd.read_csv(tmp_path / "api" / "no_face.csv")
    assert set(no_face["path"].map(os.path.basename)) == {"broken.jpg", "noface_000.jpg"}
    assert "faces/s" in capsys.readouterr().out

    assert main(["predict", str(tiny_run / "best.pt"), str(out), "--out", str(tmp_path / "cli"), "--detect", "dlib-hog",
                 "--min-face", "1000", "--device", "cpu"]) == 0
    # Every face is smaller than 1000 px: no rows, every photo listed with its reason, still not an
    # error (photos were read; only photos that cannot be read at all fail the command).
    assert len(pd.read_csv(tmp_path / "cli" / "predictions.csv")) == 0
    assert len(pd.read_csv(tmp_path / "cli" / "no_face.csv")) == 7


def test_fairface_columns_never_take_a_true_label_name(tiny_run):
    # Issue 32: `predict --detect` wrote predicted labels into `race`, `gender`, `age`, the columns a
    # predictions table (and the audit) reads as true labels.
    from facefair.inference.photos import fairface_columns
    from facefair.table import tasks_in
    from facefair.labels import ATTRIBUTES
    model = load_model(tiny_run / "best.pt", "cpu")
    rng = np.random.default_rng(0)
    outputs = {t.name: (rng.dirichlet(np.ones(len(t.classes)), 3) if t.kind == "classification"
                        else rng.uniform(1, 80, 3)) for t in model.tasks}
    columns = pd.DataFrame(fairface_columns(model, outputs))
    assert not set(columns) & {*ATTRIBUTES, "age"}, sorted(columns)
    assert tasks_in(columns) == []                       # and none reads as a task's prediction either
    assert columns["gender_fair"].isin(["Male", "Female"]).all()
