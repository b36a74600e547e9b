"""Explanations: Grad-CAM (a synthetic case with a known answer, and a real model on real faces),
LIME on a real face, the confident-error gallery, and the ``explain`` command."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from facefair.data.images import decode
from facefair.explain.cli import register
from facefair.explain.gallery import confident_errors_gallery, most_confident_errors
from facefair.explain.gradcam import find_target_layer, gradcam, plot_gradcam_grid
from facefair.tasks import TaskSpec

pytest.importorskip("captum", reason="Grad-CAM needs captum")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small CPU models run faster on one thread than on two contended ones; restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class BrightSpotModel(nn.Module):
    """Says class 0 in proportion to how many pixels are bright: the evidence is the bright patch,
    so a correct Grad-CAM must light up there and nowhere else."""

    def __init__(self):
        super().__init__()
        self.tasks = [TaskSpec("gender", "gender", "classification", ("Male", "Female"))]
        conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(1 / 3)
            conv.bias.fill_(-1.0)  # normalised grey is > 1 only for bright pixels
        self.features = nn.Sequential(conv, nn.ReLU())
        head = nn.Linear(1, 2)
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            head.bias.zero_()
        self.heads = nn.ModuleDict({"gender": head})

    def forward(self, x):
        return {"gender": self.heads["gender"](self.features(x).mean(dim=(2, 3)))}

    def predict(self, outputs):
        return {k: v.softmax(dim=-1) for k, v in outputs.items()}


def test_gradcam_peaks_on_the_evidence_not_transposed():
    image = np.full((1, 32, 32, 3), 40, dtype=np.uint8)
    image[0, 4:10, 20:30] = 255  # rows 4-9, columns 20-29: a transposed map would miss it
    model = BrightSpotModel()
    assert find_target_layer(model, 32)[0] == "features"
    result = gradcam(model, image)
    cam = result.maps["gender"][0]
    assert cam.shape == (32, 32) and result.predicted["gender"] == ["Male"]
    row, col = np.unravel_index(cam.argmax(), cam.shape)
    assert 4 <= row < 10 and 20 <= col < 30
    inside = np.zeros_like(cam, dtype=bool)
    inside[4:10, 20:30] = True
    assert cam[inside].mean() > 0.9 and cam[~inside].mean() < 0.05


class YoungerWhenBrightModel(BrightSpotModel):
    """Exact age = 33 - 20 x (bright area): the bright patch pulls the years *down*, so the face is
    predicted young and all of its evidence is negative."""

    def __init__(self):
        super().__init__()
        self.tasks = [TaskSpec("age", "age", "regression", ())]
        self.heads = nn.ModuleDict({"age": nn.Linear(1, 1)})
        with torch.no_grad():
            self.heads["age"].weight.fill_(-20.0)
            self.heads["age"].bias.fill_(33.0)

    def forward(self, x):
        return {"age": self.heads["age"](self.features(x).mean(dim=(2, 3)))[:, 0]}

    def predict(self, outputs):
        return outputs


def test_exact_age_map_is_signed_so_a_young_face_is_not_blank(tmp_path):
    image = np.full((1, 32, 32, 3), 40, dtype=np.uint8)
    image[0, 4:10, 20:30] = 255
    result = gradcam(YoungerWhenBrightModel(), image)
    cam = result.maps["age"][0]
    assert result.signed["age"] and float(result.predicted["age"][0].split()[0]) < 33
    assert cam.min() == pytest.approx(-1.0) and cam.max() <= 0  # evidence for "younger", where the patch is
    row, col = np.unravel_index(cam.argmin(), cam.shape)
    assert 4 <= row < 10 and 20 <= col < 30
    png = plot_gradcam_grid(image, result, tmp_path / "age.png")
    assert png.stat().st_size > 2000


@pytest.fixture(scope="module")
def model_and_faces(tiny_run):
    from facefair.models.multitask import load_model
    model = load_model(tiny_run / "best.pt")
    predictions = pd.read_csv(tiny_run / "predictions.csv").head(3)
    size = model.config.resolved_size()
    return model, predictions, np.stack([decode(p, size) for p in predictions["path"]])


def test_gradcam_on_a_trained_model_and_real_faces(model_and_faces, tmp_path):
    model, predictions, faces = model_and_faces
    result = gradcam(model, faces)
    assert result.layer == "backbone.bn2"  # timm MobileNetV2's last feature map
    assert result.tasks == ["gender", "race", "age_group", "age"]
    for task in result.tasks:
        maps = result.maps[task]
        assert maps.shape == (3, *faces.shape[1:3]) and np.isfinite(maps).all()
        assert maps.min() >= (-1 if result.signed[task] else 0) and maps.max() <= 1
    assert result.signed == {"gender": False, "race": False, "age_group": False, "age": True}
    assert all(p in ("Male", "Female") for p in result.predicted["gender"])
    png = plot_gradcam_grid(faces, result, tmp_path / "cam.png", truths={"gender": predictions["gender_true"].tolist()})
    with Image.open(png) as picture:
        assert picture.size[0] > 800 and picture.size[1] > 500  # 5 columns, 3 rows


def test_lime_on_a_real_face(model_and_faces):
    from facefair.explain.lime_explain import LimeConfig, explain_image
    model, _, faces = model_and_faces
    result = explain_image(model, faces[0], "race", LimeConfig(num_samples=60, display_size=96))
    assert result.label in model.tasks[1].classes and 0 <= result.probability <= 1
    assert result.segments.shape == result.weight_map.shape == (96, 96)
    assert len(np.unique(result.segments)) >= 10
    assert len(result.top_segments) <= 5
    with pytest.raises(ValueError, match="regression"):
        explain_image(model, faces[0], "age")


def test_gallery_picks_the_most_confident_errors_per_group():
    frame = pd.DataFrame({
        "path": [f"/nowhere/{i}.jpg" for i in range(7)],
        "race": ["White", "White", "White", "White", "Black", "Black", "Black"],
        "gender_true": ["Male", "Male", "Female", "Male", "Female", "Female", "Male"],
        "gender_pred": ["Female", "Male", "Male", "Female", "Male", "Female", "Female"],
        # row 1 is right and the most confident of all: it must not be picked
        "gender_prob_Male": [0.30, 0.99, 0.95, 0.45, 0.60, 0.01, 0.20],
        "gender_prob_Female": [0.70, 0.01, 0.05, 0.55, 0.40, 0.99, 0.80],
    })
    picked = most_confident_errors(frame, "gender", per_group=2)
    assert picked.groupby("group")["path"].apply(list).to_dict() == {
        "Black": ["/nowhere/6.jpg", "/nowhere/4.jpg"],   # 0.80, 0.60
        "White": ["/nowhere/2.jpg", "/nowhere/0.jpg"],   # 0.95, 0.70 (0.55 is third)
    }
    assert picked["score"].tolist() == pytest.approx([0.80, 0.60, 0.95, 0.70])
    html = confident_errors_gallery(frame, "gender", per_group=2)
    assert html.count("data:image/png;base64,") == 1 and "0.950" in html


def test_gallery_of_real_predictions_and_exact_age(tiny_run, tmp_path):
    predictions = pd.read_csv(tiny_run / "predictions.csv")
    ages = most_confident_errors(predictions, "age", per_group=3)
    assert (ages.groupby("group").size() <= 3).all()
    worst = (predictions["age_pred"] - predictions["age_true"]).abs().max()
    assert ages["score"].max() == pytest.approx(worst)
    html = confident_errors_gallery(predictions, "race", per_group=3, png_path=tmp_path / "g.png")
    assert html.startswith("<section") and (tmp_path / "g.png").stat().st_size > 5000


def test_explain_command_on_a_run(tiny_run, tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["explain", str(tiny_run), "--sample", "2", "--lime-samples", "30",
                              "--tasks", "gender", "age", "--out", str(tmp_path / "x")])
    assert args.func(args) == 0
    out = tmp_path / "x"
    for name in ("gradcam.png", "lime.png", "gallery_gender.png", "gallery_age.png", "explain.html"):
        assert (out / name).stat().st_size > 2000, name
    page = (out / "explain.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "http" not in page.replace("http-equiv", "")
    assert len(pd.read_csv(out / "explained_images.csv")) == 2


def test_missing_image_is_one_line_naming_it(tiny_run, tmp_path, capsys):
    from facefair.cli import main
    assert main(["explain", str(tiny_run), "--image", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"facefair explain: error: --image {tmp_path / 'nope.jpg'} not found"


def test_galleries_only_of_another_models_predictions_name_that_table(tiny_run, tmp_path):
    from facefair.cli import main
    other = tmp_path / "pca-rf" / "predictions.csv"
    other.parent.mkdir()
    pd.read_csv(tiny_run / "predictions.csv").to_csv(other, index=False)
    # `--methods` with no value, as docs/explain.md writes it: the galleries only, no model run.
    assert main(["explain", str(tiny_run), "--predictions", str(other), "--methods", "--out", str(tmp_path / "g")]) == 0
    page = (tmp_path / "g" / "explain.html").read_text()
    title = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert str(other) in title and str(tiny_run) not in title
    assert "not necessarily" in page and not (tmp_path / "g" / "gradcam.png").exists()
    assert main(["explain", str(tiny_run), "--predictions", str(tmp_path / "missing.csv"), "--methods"]) == 2
