"""Face detection + FairFace alignment on composed photos: real UTKFace faces pasted (scaled,
rotated) onto a larger canvas, so every face's box is known."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from photo_compose import compose_set, match_detections
from facefair.align.detectors import DetectorConfig, available_backends
from facefair.align.pipeline import MANIFEST_COLUMNS, AlignConfig, align_paths

BACKENDS = available_backends()


def _faces(utkface_dir, step: int = 97) -> list[str]:
    return [str(utkface_dir / n) for n in sorted(os.listdir(utkface_dir))[::step] if n.endswith(".jpg")]


@pytest.fixture(scope="module")
def composed(utkface_dir, tmp_path_factory):
    """8 photos with 2-4 faces (90-170 px, up to 15 degrees), 2 photos without a face, one large
    photo (shrunk by max_side before detection) and one file that is not an image."""
    out = tmp_path_factory.mktemp("composed")
    truth = compose_set(_faces(utkface_dir), out, photos=8, no_face_photos=2, seed=3)
    big = compose_set(_faces(utkface_dir, 131), out / "big", photos=1, faces_per_photo=(2, 2), seed=4,
                      canvas=(1600, 1200), face_sizes=(260, 320))
    (out / "broken.jpg").write_bytes(b"this is not a jpeg")
    return out, pd.concat([truth, big], ignore_index=True)


def _photos(out) -> list[str]:
    return sorted(str(p) for p in out.rglob("*.jpg"))


@pytest.mark.parametrize("backend,min_recall", [("dlib-hog", 0.8), ("mtcnn", 0.95)])
def test_detection_recall_boxes_chips_and_manifest(composed, tmp_path, backend, min_recall):
    if backend not in BACKENDS:
        pytest.skip(f"{backend} backend not installed")
    out, truth = composed
    # One torch thread for MTCNN: the test machine's cores are shared.
    result = align_paths(_photos(out), tmp_path / "chips", DetectorConfig(backend=backend, torch_threads=1),
                         AlignConfig(size=112, padding=0.25), root=out, progress=False)
    manifest = pd.read_csv(tmp_path / "chips" / "manifest.csv")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    matched = match_detections(truth, manifest.rename(columns={"source": "path"}), min_iou=0.4)
    recall = matched["detected"].mean()
    assert recall >= min_recall, matched[~matched["detected"]]
    assert matched.loc[matched["detected"], "iou"].median() > 0.6
    assert matched.attrs["false_positives"] <= 1
    # The large photo was shrunk to 800 px for detection, yet its boxes are in its own pixels.
    # (The truth boxes are 240-300 px wide there; detection saw them at half that.)
    big = matched[matched["path"].str.contains("/big/")]
    assert len(big) == 2 and big["detected"].all()
    big_found = manifest[manifest["source"].str.contains("/big/")]
    assert ((big_found["box_x1"] - big_found["box_x0"]) > 200).all()
    # Chips: the requested size, named after their photo, landmarks inside their box.
    for name in manifest["file"]:
        with Image.open(tmp_path / "chips" / name) as chip:
            assert chip.size == (112, 112)
    xs = manifest[[f"lm{i}_x" for i in range(5)]].to_numpy()
    ys = manifest[[f"lm{i}_y" for i in range(5)]].to_numpy()
    slack = 0.1 * (manifest["box_x1"] - manifest["box_x0"]).to_numpy()[:, None]
    box = {c: manifest[[c]].to_numpy() for c in ("box_x0", "box_y0", "box_x1", "box_y1")}
    assert ((xs >= box["box_x0"] - slack) & (xs <= box["box_x1"] + slack)).all()
    assert ((ys >= box["box_y0"] - slack) & (ys <= box["box_y1"] + slack)).all()
    assert manifest["backend"].eq(backend).all() and manifest["file"].str.match(r".*_face\d+\.jpg$").all()
    # Photos without a face and the broken file are listed, not fatal.
    skipped = pd.read_csv(tmp_path / "chips" / "skipped.csv")
    reasons = dict(zip(skipped["source"].map(lambda p: os.path.basename(p)), skipped["reason"]))
    assert reasons.get("noface_000.jpg") == "no face" and reasons.get("noface_001.jpg") == "no face"
    assert reasons["broken.jpg"].startswith("unreadable")
    assert result.summary()["photos_without_face"] == 2 and result.summary()["unreadable"] == 1


def test_min_face_and_workers(composed, tmp_path):
    if "dlib-hog" not in BACKENDS:
        pytest.skip("dlib not installed")
    out, truth = composed
    photos = [p for p in _photos(out) if "photo_00" in p][:3]
    serial = align_paths(photos, tmp_path / "a", DetectorConfig(backend="dlib-hog"), AlignConfig(size=64),
                         progress=False)
    parallel = align_paths(photos, tmp_path / "b", DetectorConfig(backend="dlib-hog"), AlignConfig(size=64),
                           workers=2, progress=False)
    columns = ["source", "face_index", "box_x0", "box_y1", "det_score"]
    pd.testing.assert_frame_equal(serial.manifest[columns], parallel.manifest[columns])
    # Every composed face is at least 90 px: a 400 px minimum removes them all, and says why.
    none = align_paths(photos, tmp_path / "c", DetectorConfig(backend="dlib-hog"), AlignConfig(min_face=400),
                       progress=False)
    assert none.faces == 0 and none.skipped["reason"].str.contains("smaller than min_face").all()


def test_dlib_cnn_backend_fairface_recipe(utkface_dir, tmp_path):
    """FairFace's own detector (MMOD CNN) on one small photo; slow on CPU, so one photo only."""
    if "dlib" not in BACKENDS:
        pytest.skip("dlib not installed")
    truth = compose_set(_faces(utkface_dir, 211)[:2], tmp_path / "p", photos=1, faces_per_photo=(2, 2), seed=5,
                        canvas=(400, 300), face_sizes=(110, 130), max_angle=8)
    result = align_paths(sorted(truth["path"].unique()), tmp_path / "chips", DetectorConfig(backend="dlib", upsample=0),
                         AlignConfig(size=96), progress=False)
    matched = match_detections(truth, result.manifest.rename(columns={"source": "path"}))
    assert matched["detected"].all()
    assert (result.manifest["landmark_scheme"] == "dlib5").all() and (result.manifest["det_score"] > 0).all()


def test_border_finds_faces_in_tight_crops(utkface_dir, tmp_path):
    """Dataset images are tight crops; padding them gives the detector the context it needs."""
    if "dlib-hog" not in BACKENDS:
        pytest.skip("dlib not installed")
    crops = _faces(utkface_dir, 1009)[:12]
    result = align_paths(crops, tmp_path, DetectorConfig(backend="dlib-hog"), AlignConfig(size=64, border=0.25),
                         progress=False)
    assert result.faces >= 11
    # Boxes are reported in the crop's own pixels (the border is taken off again).
    assert (result.manifest[["box_x0", "box_y0"]] >= 0).all().all()
    assert (result.manifest[["box_x1", "box_y1"]] <= 200).all().all()
    assert np.isfinite(result.manifest["det_score"]).all()
