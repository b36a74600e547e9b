"""FairFace chip geometry: the similarity transform, padding, the pure-PIL path against dlib's
own get_face_chips, MTCNN's template, and clear errors when a backend is missing."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pytest
from PIL import Image

from facefair.align import chips as C
from facefair.align.detectors import DetectorConfig, Face, MissingBackend, available_backends, make_detector

BACKENDS = available_backends()


def test_similarity_transform_recovers_rotation_scale_shift():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = np.deg2rad(17), 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rotation).T + shift
    matrix = C.similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("padding", [0.25, 1.25])
def test_landmarks_land_on_the_padded_template(padding):
    """The chip puts the 5 landmarks where dlib's template (with padding) says, whatever the
    face's rotation and size; more padding = a smaller face in the chip."""
    size = 224
    template = (padding + C.DLIB5_TEMPLATE) / (2 * padding + 1) * size
    rotation = np.deg2rad(-12)
    turn = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    landmarks = C.DLIB5_TEMPLATE @ (150 * turn).T + np.array([300.0, 200.0])
    matrix = C.chip_matrix(landmarks, "dlib5", size, padding)
    np.testing.assert_allclose(template @ matrix[:, :2].T + matrix[:, 2], landmarks, atol=1e-6)
    eye_gap = np.linalg.norm(template[0] - template[2])
    assert eye_gap == pytest.approx(0.7390 * size / (1 + 2 * padding), rel=1e-3)


def test_extract_chip_size_and_black_outside():
    image = Image.new("RGB", (120, 80), (200, 100, 50))
    # A face "at" the image's corner: most of the chip falls outside and must be black.
    landmarks = C.DLIB5_TEMPLATE * 60 + np.array([-30.0, -30.0])
    chip = C.extract_chip(image, C.chip_matrix(landmarks, "dlib5", 64, 0.25), 64)
    assert chip.shape == (64, 64, 3) and chip.dtype == np.uint8
    assert (chip[2, 2] == 0).all() and (chip[-3, -3] == (200, 100, 50)).all()


def test_large_faces_are_reduced_before_sampling():
    """A 1000 px face on a fine checkerboard: shrinking first must give grey, not aliasing moire."""
    board = (np.indices((1200, 1200)).sum(0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([board] * 3, axis=-1))
    landmarks = C.DLIB5_TEMPLATE * 1000 + 100
    chip = C.extract_chip(image, C.chip_matrix(landmarks, "dlib5", 50, 0.0), 50).astype(float)
    assert abs(chip.mean() - 127.5) < 10 and chip.std() < 20


def test_align_faces_keeps_order_and_size():
    image = np.full((300, 400, 3), 90, dtype=np.uint8)
    faces = [Face((50, 50, 150, 150), 1.0, C.DLIB5_TEMPLATE * 100 + 50, "dlib5"),
             Face((200, 60, 320, 180), 0.5, C.MTCNN5_TEMPLATE * 120 + [200, 60], "mtcnn5")]
    chips = C.align_faces(image, faces, size=80, padding=1.25, use_dlib=False)
    assert [c.shape for c in chips] == [(80, 80, 3), (80, 80, 3)]
    assert C.align_faces(image, [], size=80) == []


@pytest.fixture(scope="module")
def real_face(utkface_dir):
    """A real face with room around it (UTKFace chips are tight crops)."""
    name = sorted(os.listdir(utkface_dir))[500]
    face = np.asarray(Image.open(utkface_dir / name).convert("RGB"))
    return np.pad(face, ((80, 80), (80, 80), (0, 0)), mode="edge")


def test_pil_chips_match_dlib_get_face_chips(real_face):
    if "dlib-hog" not in BACKENDS:
        pytest.skip("dlib not installed")
    faces = make_detector(DetectorConfig(backend="dlib-hog")).detect(real_face)
    assert len(faces) == 1
    for padding in (0.25, 1.25):
        exact = C.align_faces(real_face, faces, size=224, padding=padding)[0].astype(float)
        ours = C.align_faces(real_face, faces, size=224, padding=padding, use_dlib=False)[0].astype(float)
        # Same geometry; only interpolation differs (a half-pixel shift would cost far more).
        assert np.abs(exact - ours).mean() < 6


def test_mtcnn_chips_have_fairface_geometry(real_face):
    """MTCNN's landmarks are other points; through MTCNN5_TEMPLATE its chip matches dlib's."""
    if not {"dlib-hog", "mtcnn"} <= set(BACKENDS):
        pytest.skip("needs both dlib and facenet-pytorch")
    dlib_face = make_detector(DetectorConfig(backend="dlib-hog")).detect(real_face)[0]
    mtcnn_face = make_detector(DetectorConfig(backend="mtcnn", torch_threads=1)).detect(real_face)[0]
    size = 224
    dlib_matrix = C.chip_matrix(dlib_face.landmarks, "dlib5", size, 0.25)
    mtcnn_matrix = C.chip_matrix(mtcnn_face.landmarks, "mtcnn5", size, 0.25)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=float)
    gap = np.abs(corners @ dlib_matrix[:, :2].T - corners @ mtcnn_matrix[:, :2].T
                 + dlib_matrix[:, 2] - mtcnn_matrix[:, 2]).max()
    assert gap < 0.1 * size  # chip corners within 10% of the chip side


def test_missing_backends_name_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(MissingBackend, match="dlib-bin"):
        make_detector(DetectorConfig(backend="dlib-hog"))
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(MissingBackend, match="facenet-pytorch"):
        make_detector(DetectorConfig(backend="mtcnn"))
    monkeypatch.delitem(sys.modules, "dlib")
    if "dlib-hog" in BACKENDS:
        with pytest.raises(MissingBackend, match="face-recognition-models"):
            make_detector(DetectorConfig(backend="dlib-hog", model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector(DetectorConfig(backend="opencv"))


def test_cli_registers_without_backends(monkeypatch):
    """`register` must work with dlib and facenet-pytorch absent; a missing backend is a usage error."""
    from facefair.align import cli

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["align", "photos/", "out/", "--detect", "dlib-hog", "--padding", "1.25"])
    assert args.padding == 1.25 and args.detect == "dlib-hog"
    from facefair.cli import build_parser
    args = build_parser().parse_args(["predict", "best.pt", "photos/", "--detect", "mtcnn", "--min-face", "40"])
    # padding None: the model's measured training-chip padding (FairFace's 0.25 when it has none)
    assert args.min_face == 40 and args.max_side == 800 and args.padding is None
    with pytest.raises(ValueError, match="dlib-bin"):
        cli.run_guarded(lambda a: make_detector(DetectorConfig(backend="dlib")))(args)
