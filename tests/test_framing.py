"""Training and inference frame faces the same way: the training chips' framing is measured and
stored in the model files, predict/evaluate --detect cut chips with its padding, and cropped faces
framed unlike the training chips get a warning that suggests --detect."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facefair.align.framing import DEFAULT_PADDING, chip_padding, measure_chip_framing


def _widen(chips: list[Path], out: Path) -> Path:
    """Each face shrunk into a frame twice its size, as FairFace's margin-1.25 photos hold them
    (same file names, so UTKFace labels still read from them)."""
    out.mkdir()
    for path in chips:
        with Image.open(path) as image:
            canvas = Image.new("RGB", (2 * image.width, 2 * image.height), (120, 120, 120))
            canvas.paste(image, (image.width // 2, image.height // 2))
            canvas.save(out / path.name, quality=95)
    return out


def _facefair(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "facefair", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_chip_padding_is_measured_not_assumed(utk_sample, tmp_path):
    """UTKFace's chips measure as FairFace's padding 0.25; the same faces cut at padding 1.0 must
    measure as about 1.0, or the calibration says nothing."""
    from facefair.align.chips import align_faces
    from facefair.align.detectors import DetectorConfig, make_detector
    from facefair.align.framing import main_face, pad_edges
    from facefair.align.pipeline import load_photo

    chips = sorted(str(p) for p in utk_sample.iterdir())[::6][:24]
    utk = measure_chip_framing(chips, sample=24)
    assert utk["calibrated_on"] >= 12 and utk["padding"] == pytest.approx(0.25, abs=0.1)
    detector = make_detector(DetectorConfig(backend="dlib-hog"))
    wide = tmp_path / "wide"
    wide.mkdir()
    for path in chips:
        image = pad_edges(load_photo(path, 800)[0], 0.25)
        face = main_face(detector.detect(image))
        if face is not None:
            Image.fromarray(align_faces(image, [face], 200, 1.0)[0]).save(wide / Path(path).name)
    loose = measure_chip_framing(sorted(str(p) for p in wide.iterdir()), sample=24)
    assert loose["padding"] == pytest.approx(1.0, abs=0.25)
    assert chip_padding(None) == DEFAULT_PADDING and chip_padding({"padding": 0.6}) == 0.6


def test_framing_travels_in_the_model_and_drives_evaluate_and_predict(tiny_run, utk_sample, tmp_path):
    config = json.loads((tiny_run / "config.json").read_text())
    framing = config["framing"]
    assert framing["detector"] == "dlib-hog" and framing["measured"]["found"] > 0.5
    assert framing["padding"] == pytest.approx(0.25, abs=0.1)
    assert json.loads((tiny_run / "report.json").read_text())["run"]["framing"] == framing

    chips = sorted(utk_sample.iterdir())[::10][:24]
    tight = tmp_path / "tight"
    tight.mkdir()
    for path in chips:
        (tight / path.name).write_bytes(path.read_bytes())
    wide = _widen(chips, tmp_path / "wide")

    # Cropped faces framed like the training chips: no warning.
    _facefair("evaluate", str(tiny_run), "--data", str(tight), "--out", str(tmp_path / "ev-tight"), "--no-tta")
    report = json.loads((tmp_path / "ev-tight" / "report.json").read_text())
    assert report["framing"]["warning"] is None

    # The same faces in a frame twice as wide: evaluate and predict say so and suggest --detect.
    result = _facefair("evaluate", str(tiny_run), "--data", str(wide), "--out", str(tmp_path / "ev-wide"), "--no-tta")
    report = json.loads((tmp_path / "ev-wide" / "report.json").read_text())
    assert "framed unlike" in report["framing"]["warning"] and "--detect" in result.stderr
    assert report["framing"]["at_hand"]["face_size"] < 0.7 * report["framing"]["training"]["face_size"]
    result = _facefair("predict", str(tiny_run), str(wide), "--out", str(tmp_path / "pr-wide"), "--no-tta")
    assert "framed unlike" in result.stderr
    assert json.loads((tmp_path / "pr-wide" / "framing.json").read_text())["warning"]
    result = _facefair("predict", str(tiny_run), str(wide), "--out", str(tmp_path / "pr-quiet"), "--no-tta",
                       "--no-framing-check")
    assert "framed unlike" not in result.stderr and not (tmp_path / "pr-quiet" / "framing.json").exists()

    # --detect: the photos' faces re-cut with the model's padding, scored with the photos' labels.
    result = _facefair("evaluate", str(tiny_run), "--data", str(wide), "--detect", "dlib-hog",
                       "--out", str(tmp_path / "ev-detect"), "--no-tta")
    report = json.loads((tmp_path / "ev-detect" / "report.json").read_text())
    detect = report["detect"]
    assert detect["padding"] == framing["padding"] and detect["photos"] == len(chips)
    assert detect["faces"] + detect["no_face"]["count"] == len(chips) and detect["faces"] >= len(chips) // 2
    assert report["metrics"]["gender"]["n"] == detect["faces"]
    assert (tmp_path / "ev-detect" / "no_face.csv").is_file()
    assert len(list((tmp_path / "ev-detect" / "chips").iterdir())) >= detect["faces"]
    result = _facefair("predict", str(tiny_run), str(wide), "--detect", "dlib-hog", "--out", str(tmp_path / "pr-d"),
                       "--no-tta")
    assert "padding 0.25 (measured on the training chips)" in result.stdout.replace(f"{framing['padding']:g}", "0.25")


def test_evaluate_detect_needs_another_dataset(tiny_run):
    from facefair.evaluate.run import evaluate_run
    with pytest.raises(ValueError, match="--detect applies to --data"):
        evaluate_run(str(tiny_run), detect="dlib-hog")
