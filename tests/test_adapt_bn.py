"""Test-time BatchNorm adaptation (``--adapt-bn``): the statistics it computes, what it refuses, raw
photos adapted over every face found, and ``evaluate --adapt-bn`` on real faces beside the model's
own figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def _model():
    from facefair.models.multitask import ModelConfig, MultiTaskModel
    from facefair.tasks import make_tasks
    torch.manual_seed(0)
    return MultiTaskModel(ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
                          make_tasks(["gender", "race"], "race5"), load_weights=False).eval()


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _first_batchnorm(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_statistics_are_every_faces_and_mirrors_mean_with_a_small_last_batch_and_the_model_is_untouched():
    from facefair.data.batches import ArrayBatches, to_float
    from facefair.inference.adapt import adapt_batchnorm

    model, faces = _model(), _faces(100)  # batches of 64 and 36: unequal, as real sets are
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = adapt_batchnorm(model, ArrayBatches(faces, np.arange(100), 64), np.arange(100), torch.device("cpu"),
                              tta=True, autocast=torch.autocast("cpu", enabled=False))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the caller's model keeps its training statistics
    layer = _first_batchnorm(adapted)
    assert not layer.training and not adapted.training
    # What the first BatchNorm normalises: the stem convolution's output, over every face and its mirror.
    x = to_float(torch.from_numpy(faces), torch.device("cpu"))
    stem = next(m for m in adapted.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        features = torch.cat([stem(x), stem(torch.flip(x, dims=[3]))])
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(layer.running_mean, expected, atol=1e-5)
    assert not torch.allclose(_first_batchnorm(model).running_mean, expected, atol=1e-3)


def test_predictions_move_with_the_set_and_too_few_faces_are_refused():
    from facefair.inference.engine import predict_arrays
    from facefair.inference.settings import DEFAULTS

    model = _model()
    faces = _faces(80)
    bright = np.clip(faces.astype(int) // 2 + 128, 0, 255).astype(np.uint8)  # a shifted source
    plain = predict_arrays(model, bright, DEFAULTS)
    adapted = predict_arrays(model, bright, DEFAULTS.with_options(adapt_bn=True))
    assert not np.allclose(plain["race"], adapted["race"])
    assert np.allclose(plain["race"], predict_arrays(model, bright, DEFAULTS)["race"])  # the model was not changed
    with pytest.raises(ValueError, match="at least 64 faces from one source.*got 10 faces.*without --adapt-bn"):
        predict_arrays(model, bright[:10], DEFAULTS.with_options(adapt_bn=True))


class _KnownFaces:
    """Two faces where the photos below put them (the photo path is under test, not a detector)."""

    origins = ((10, 10), (150, 10))

    def __init__(self):
        from facefair.align.detectors import DetectorConfig
        self.config = DetectorConfig()  # what the photo path reads off a built detector

    def detect(self, image: np.ndarray):
        from facefair.align.chips import MTCNN5_TEMPLATE
        from facefair.align.detectors import Face
        return [Face((x, y, x + 100, y + 100), 1.0, np.array([x, y]) + MTCNN5_TEMPLATE * 100, "mtcnn5")
                for x, y in self.origins]


def test_raw_photos_adapt_over_every_face_found_before_any_is_predicted(utk_sample, tmp_path):
    from PIL import Image

    from facefair.align.pipeline import iter_photos
    from facefair.data.images import resize_face
    from facefair.inference.engine import predict_arrays
    from facefair.inference.photos import align_config, predict_photos_detailed
    from facefair.inference.settings import DEFAULTS

    model, detector = _model(), _KnownFaces()
    faces = sorted(utk_sample.glob("*.jpg"))
    photos = []
    for i in range(34):  # 68 faces in all, in batches of 16: no batch alone has the 64 adaptation needs
        canvas = Image.new("RGB", (260, 120), (200, 200, 190))
        for k, (x, y) in enumerate(detector.origins):
            canvas.paste(Image.open(faces[(2 * i + k) % len(faces)]).convert("RGB").resize((100, 100)), (x, y))
        photos.append(str(tmp_path / f"photo_{i:02d}.jpg"))
        canvas.save(photos[-1], quality=95)
    settings = DEFAULTS.with_options(batch_size=16, tta=False, adapt_bn=True)
    adapted, no_face = predict_photos_detailed(model, photos, detector, settings, progress=False)
    plain, _ = predict_photos_detailed(model, photos, detector, settings.with_options(adapt_bn=False), progress=False)
    assert len(adapted) == 68 and no_face.empty
    # the same as adapting over the 68 chips at once: the set is every face of every photo
    chips = np.stack([resize_face(chip, 32) for photo in iter_photos(photos, detector.config,
                      align_config(model, settings), detector=detector) for chip in photo.chips])
    expected = predict_arrays(model, chips, settings)["race"]
    race = adapted[[f"race_prob_{c}" for c in model.tasks[1].classes]].to_numpy()
    np.testing.assert_allclose(race, expected, atol=1e-5)
    assert not np.allclose(race, plain[[f"race_prob_{c}" for c in model.tasks[1].classes]].to_numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="at least 64 faces from one source.*got 20 faces"):
        predict_photos_detailed(model, photos[:10], detector, settings, progress=False)


def test_evaluate_adapt_bn_writes_beside_the_models_own_figures(tiny_run, utk_sample, tmp_path, capsys):
    import shutil
    from pathlib import Path

    import pandas as pd

    from facefair.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    faces = sorted(utk_sample.iterdir())[:80]
    for i, face in enumerate(faces):
        target = tmp_path / "studio" / Path(*(("female", "asian") if i % 2 else ("male", "caucasian"))) / face.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(face, target)
    studio = str(tmp_path / "studio")
    common = ["--no-tta", "--no-framing-check", "--n-boot", "30"]
    assert main(["evaluate", str(run), "--data", studio, *common]) == 0
    assert main(["evaluate", str(run), "--data", studio, "--adapt-bn", *common]) == 0
    assert "--adapt-bn: BatchNorm statistics re-estimated on these 80 faces" in capsys.readouterr().out
    plain, adapted = run / "eval-studio", run / "eval-studio-adapt-bn"
    assert json.loads((plain / "report.json").read_text())["adapt_bn"] is False
    assert json.loads((adapted / "report.json").read_text())["adapt_bn"] is True
    own, moved = pd.read_csv(plain / "predictions.csv"), pd.read_csv(adapted / "predictions.csv")
    assert list(own["path"]) == list(moved["path"]) and not np.allclose(own["race_prob_White"], moved["race_prob_White"])
    # the transfer report of each stays its own, and the adapted one says what was done
    assert (run / "transfer" / "transfer.json").is_file()
    assert "--adapt-bn" in (run / "transfer-adapt-bn" / "transfer.html").read_text()
    assert "--adapt-bn" not in (run / "transfer" / "transfer.html").read_text()


def test_predict_adapt_bn_says_so_and_refuses_a_handful_of_faces(tiny_run, utk_sample, tmp_path, capsys):
    import shutil

    import pandas as pd

    from facefair.cli import main

    faces = sorted(utk_sample.iterdir())
    for name, count in (("many", 70), ("few", 10)):
        (tmp_path / name).mkdir()
        for face in faces[:count]:
            shutil.copy(face, tmp_path / name / face.name)
    common = ["--no-tta", "--no-framing-check", "--no-progress"]
    assert main(["predict", str(tiny_run), str(tmp_path / "many"), "--out", str(tmp_path / "plain"), *common]) == 0
    assert main(["predict", str(tiny_run), str(tmp_path / "many"), "--out", str(tmp_path / "adapted"), "--adapt-bn",
                 *common]) == 0
    assert "BatchNorm statistics re-estimated on these faces (--adapt-bn)" in capsys.readouterr().out
    plain, adapted = (pd.read_csv(tmp_path / out / "predictions.csv") for out in ("plain", "adapted"))
    assert len(adapted) == 70 and not np.allclose(plain["gender_prob_Male"], adapted["gender_prob_Male"])
    # the table alone cannot say its answers depend on the set: the record beside it does
    records = {out: json.loads((tmp_path / out / "predict.json").read_text()) for out in ("plain", "adapted")}
    assert records["adapted"]["settings"]["adapt_bn"] is True and records["adapted"]["adapted_on"] == 70
    assert records["plain"]["settings"]["adapt_bn"] is False and records["plain"]["adapted_on"] is None
    assert records["adapted"]["counts"] == {"images": 70, "predicted": 70, "unreadable": 0}
    assert records["adapted"]["source"] == str((tmp_path / "many").resolve())
    assert main(["predict", str(tiny_run), str(tmp_path / "few"), "--out", str(tmp_path / "few-out"), "--adapt-bn",
                 *common]) == 2
    assert "at least 64 faces from one source" in capsys.readouterr().err


def test_evaluate_detect_adapts_over_every_face_found_and_scores_each_photos_largest(tiny_run, utk_sample, tmp_path,
                                                                                     capsys):
    import shutil

    from photo_compose import compose_set

    from facefair.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    faces = sorted(utk_sample.glob("*.jpg"))
    for i, folder in enumerate(("female/asian", "male/caucasian")):
        compose_set(faces, tmp_path / "photos" / folder, photos=20, faces_per_photo=(2, 2), seed=i)
    assert main(["evaluate", str(run), "--data", str(tmp_path / "photos"), "--detect", "dlib-hog", "--adapt-bn",
                 "--no-tta", "--no-framing-check", "--n-boot", "30"]) == 0
    report = json.loads((run / "eval-photos-adapt-bn" / "report.json").read_text())
    detect = report["detect"]
    assert report["adapt_bn"] is True and detect["faces_found"] > detect["faces"] >= 30
    assert report["metrics"]["gender"]["n"] == detect["faces"]  # one face scored per photo
    assert f"re-estimated on these {detect['faces_found']} faces" in capsys.readouterr().out
