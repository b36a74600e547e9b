"""One photo, one answer: ``facefair predict --detect``, ``facefair serve --detect`` and the Python
API run the same detection, chips, resize and precision, from one set of defaults
(:data:`facefair.inference.DEFAULTS`), so they give the same probabilities for the same photo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facefair.align.detectors import available_backends
from facefair.cli import build_parser, main
from facefair.inference import DEFAULTS, InferenceSettings

#: Where the big photo has its three 600 px faces (a 2160x900 canvas: larger than max_side, so the
#: shrink before detection matters, as it does for a phone photo).
ORIGINS = [(90, 150), (780, 150), (1470, 150)]


@pytest.fixture(scope="module")
def big_photo(utk_sample, tmp_path_factory):
    canvas = Image.new("RGB", (2160, 900), (236, 236, 230))
    for path, origin in zip(sorted(utk_sample.glob("*.jpg"))[::97], ORIGINS):
        canvas.paste(Image.open(path).convert("RGB").resize((600, 600), Image.BICUBIC), origin)
    out = tmp_path_factory.mktemp("big") / "big.jpg"
    canvas.save(out, quality=92)
    return out


def _probabilities(rows: list[dict]) -> np.ndarray:
    return np.array([[row[k] for k in sorted(row)] for row in rows], dtype=float)


@pytest.mark.skipif("dlib-hog" not in available_backends(), reason="dlib not installed")
@pytest.mark.parametrize("which", ["tiny_run", "hybrid_run"])
def test_same_photo_same_probabilities_through_predict_serve_and_python(which, request, big_photo, tmp_path):
    # hybrid_run: a model with face heads, whose race and gender also come from dlib descriptors.
    tiny_run = request.getfixturevalue(which)
    if which == "hybrid_run":
        tiny_run = tiny_run[0] / "run"
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from facefair.serve.app import create_app

    # facefair predict, every setting at its default.
    assert main(["predict", str(tiny_run), str(big_photo), "--detect", "dlib-hog", "--out", str(tmp_path / "p"),
                 "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "p" / "predictions.csv").sort_values("face_index")
    columns = sorted(c for c in table if "_prob_" in c)
    by_predict = table[columns].to_numpy(dtype=float)
    assert len(by_predict) == 3

    # facefair serve, every setting at its default.
    body = TestClient(create_app(tiny_run, detect="dlib-hog")).post(
        "/predict", files={"file": ("big.jpg", big_photo.read_bytes(), "image/jpeg")}).json()
    by_serve = np.array([[face["predictions"][c.split("_prob_")[0]]["probs"][c.split("_prob_")[1]] for c in columns]
                         for face in body["faces"]])
    np.testing.assert_allclose(by_serve, by_predict, atol=1e-4)
    boxes = table[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy()
    np.testing.assert_allclose([face["box"] for face in body["faces"]], boxes, atol=0.1)

    # The Python API, every setting at its default.
    import facefair as ff
    frame = ff.load(tiny_run).predict(big_photo, detect="dlib-hog")
    np.testing.assert_allclose(frame.sort_values("face_index")[columns].to_numpy(dtype=float), by_predict, atol=1e-4)


def _parsed(argv: list[str]):
    return build_parser().parse_args(argv)


def test_every_command_that_predicts_starts_from_the_same_defaults():
    from facefair.predict import PredictConfig
    from facefair.robustness.config import RobustnessConfig
    from facefair.serve.config import ServeConfig

    shared = [f.name for f in dataclasses.fields(InferenceSettings)]
    for name, config in (("predict", PredictConfig("run", "x")), ("serve", ServeConfig("run")),
                         ("robustness", RobustnessConfig())):
        settings = config.settings()
        differing = {k: getattr(settings, k) for k in shared if getattr(settings, k) != getattr(DEFAULTS, k)}
        assert differing == {}, f"{name} defaults differ from facefair.inference.DEFAULTS: {differing}"
    commands = {"predict": ["predict", "run", "x"], "serve": ["serve", "run"], "evaluate": ["evaluate", "run"],
                "robustness": ["robustness", "run"]}
    for name, argv in commands.items():
        args = vars(_parsed(argv))
        differing = {k: args[k] for k in shared if k in args and args[k] != getattr(DEFAULTS, k)}
        assert differing == {}, f"`facefair {name}` flag defaults differ from DEFAULTS: {differing}"
        assert args["device"] == DEFAULTS.device and args["tta"] == DEFAULTS.tta and args["bf16"] == DEFAULTS.bf16


def test_max_side_means_shrink_everywhere_and_uploads_have_their_own_limit():
    serve = _parsed(["serve", "run", "--max-side", "640"])
    predict = _parsed(["predict", "run", "x", "--detect", "mtcnn", "--max-side", "640"])
    assert serve.max_side == predict.max_side == 640
    assert _parsed(["serve", "run"]).max_upload_side > DEFAULTS.max_side  # a refusal limit, not the shrink
    with pytest.raises(ValueError, match="max_side"):
        InferenceSettings(max_side=-1)
    with pytest.raises(TypeError, match="unknown inference setting"):
        DEFAULTS.with_options(max_sid=3)


def test_default_precision_follows_the_training_precision(tiny_run, tmp_path):
    """fp32 and bf16 give different labels beyond noise on a real test split (docs/evaluate.md), and
    a run's own report is computed in its training precision: so the default is "as trained"."""
    import shutil

    import yaml

    from facefair.inference.engine import precision_name
    from facefair.inference.settings import resolve_bf16
    from facefair.inference.sources import load_model
    from facefair.runtime import cpu_has_native_bf16

    assert DEFAULTS.bf16 is None
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("tb", "*.csv"))
    for trained in (False, True):
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["train"]["bf16"] = trained
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        model = load_model(run, DEFAULTS.with_options(device="cpu"))
        assert model.trained_bf16 is trained
        assert resolve_bf16(None, model) == (trained and cpu_has_native_bf16())
        assert resolve_bf16(False, model) is False and resolve_bf16(True, model) is True
        assert precision_name(model) == ("bf16" if trained and cpu_has_native_bf16() else "fp32")
    (run / "config.yaml").unlink()  # an exported model keeps no training record: fp32
    assert load_model(run, DEFAULTS.with_options(device="cpu")).trained_bf16 is False
