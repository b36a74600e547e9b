"""The bad-input corpus: images, label CSVs, configs and checkpoints as users really have them.

Each case asserts two things: the message names the file (and row), and the run's other
outputs are complete (every other image predicted or cached, every other CSV row read) or,
for a file the run cannot start without, that it stops in one line having written nothing.
Everything is made in a temp dir; the model is untrained and tiny (the format is under test).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facefair.cli import main

GOOD = ["good0.jpg", "good1.png", "good2.webp", "good3.jpg"]


def _png_header(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def _face(seed: int, size=(48, 48)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def _exif_rotated() -> bytes:
    """Stored 60x30 with the top half red and bottom half blue, EXIF orientation 6 (shown rotated
    90 degrees clockwise): a viewer shows the red half on the right."""
    array = np.zeros((30, 60, 3), np.uint8)
    array[:15, :, 0] = 255
    array[15:, :, 2] = 255
    image, buffer = Image.fromarray(array), io.BytesIO()
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def _write(path: Path, image: Image.Image, fmt: str, **save) -> None:
    image.save(path, fmt, **save)


#: name -> (how to make it, None if it must decode, else text its error must contain)
IMAGE_CASES = {
    "bomb.png": (lambda p: p.write_bytes(_png_header(30_000, 30_000)), "decompression bomb"),
    "truncated.jpg": (lambda p: p.write_bytes(_encoded(_face(9, (200, 200)), "JPEG")[:400]), "truncated"),
    "zero_bytes.jpg": (lambda p: p.write_bytes(b""), "empty file"),
    "text_named.jpg": (lambda p: p.write_text("name,age\nx,3\n"), "not an image"),
    "png_named.jpg": (lambda p: _write(p, _face(10), "PNG"), None),          # wrong extension: decodes
    "cmyk.jpg": (lambda p: _write(p, _face(11).convert("CMYK"), "JPEG"), None),
    "sixteen_bit.png": (lambda p: Image.fromarray(np.full((40, 40), 40_000, np.uint16)).save(p), None),
    "palette_alpha.png": (lambda p: _write(p, _palette_with_transparency(), "PNG"), None),
    "grayscale.png": (lambda p: _write(p, _face(12).convert("L"), "PNG"), None),
    "alpha.png": (lambda p: _write(p, _transparent(), "PNG"), None),
    "exif_rotated.jpg": (lambda p: p.write_bytes(_exif_rotated()), None),
    "animated.gif": (lambda p: _face(13).save(p, "GIF", save_all=True, append_images=[_face(14)], duration=50), None),
}


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _palette_with_transparency() -> Image.Image:
    image = _face(15).convert("P")
    image.info["transparency"] = 0
    return image


def _transparent() -> Image.Image:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 1] = 200           # green under a fully transparent alpha: must not show
    return Image.fromarray(rgba, "RGBA")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, name in enumerate(GOOD):
        _face(i).save(folder / name, {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[Path(name).suffix])
    for name, (make, _) in IMAGE_CASES.items():
        make(folder / name)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch

    from facefair.models.multitask import ModelConfig, MultiTaskModel
    from facefair.models.serialization import save_pretrained
    from facefair.tasks import make_tasks
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
                           make_tasks(["gender", "race", "age"], "race5"), load_weights=False)
    return save_pretrained(model.state_dict(), model.describe(), tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predicted(image_folder, model_dir, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("predicted")
    assert main(["predict", str(model_dir), str(image_folder), "--out", str(out), "--decode-workers", "0",
                 "--no-progress", "--no-tta"]) == 0
    return pd.read_csv(out / "predictions.csv").set_index("path")


@pytest.fixture(scope="module")
def cached(image_folder, tmp_path_factory):
    from facefair.data.cache import build_cache
    paths = sorted(str(p) for p in image_folder.iterdir())
    return build_cache(paths, 32, tmp_path_factory.mktemp("cache"), workers=1, progress=False)


@pytest.mark.parametrize("name", list(IMAGE_CASES))
def test_image_decodes_or_is_reported_by_name_and_the_others_are_predicted(name, predicted, cached, image_folder):
    expected_error = IMAGE_CASES[name][1]
    by_name = {Path(p).name: row for p, row in predicted.iterrows()}
    assert len(by_name) == len(GOOD) + len(IMAGE_CASES)          # every file has its row
    for good in GOOD:                                             # ... and the good faces their predictions
        assert pd.isna(by_name[good]["error"]) and by_name[good]["gender_pred"] in ("Male", "Female")
    row = by_name[name]
    path = str(image_folder / name)
    if expected_error is None:
        assert pd.isna(row["error"]) and row["gender_pred"] in ("Male", "Female") and np.isfinite(row["age_pred"])
        assert path not in cached.bad and cached.images[cached.indices([path])[0]].shape == (32, 32, 3)
    else:
        assert expected_error in row["error"] and pd.isna(row["gender_pred"])
        assert expected_error in cached.bad[path] and name in cached.bad[path]


def test_pixels_of_converted_images_are_what_a_viewer_shows(image_folder):
    from facefair.data.images import decode
    rotated = decode(image_folder / "exif_rotated.jpg", 32)
    assert rotated[:, -8:, 0].mean() > 200 and rotated[:, :8, 2].mean() > 200   # red right, blue left
    sixteen = decode(image_folder / "sixteen_bit.png", 32)
    assert abs(int(sixteen[0, 0, 0]) - round(40_000 / 65535 * 255)) <= 1         # scaled, not clipped to 255
    assert (decode(image_folder / "alpha.png", 32) == 255).all()                 # transparent -> white
    gif = decode(image_folder / "animated.gif", 48)
    first = np.asarray(Image.open(image_folder / "animated.gif").convert("RGB"))
    assert np.abs(gif.astype(int) - first.astype(int)).mean() < 1               # the first frame


def test_four_faces_and_a_bomb_give_four_predictions_and_name_the_bomb(model_dir, tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(4):
        _face(i).save(folder / f"face{i}.jpg")
    (folder / "bomb.png").write_bytes(_png_header(30_000, 30_000))
    assert main(["predict", str(model_dir), str(folder), "--out", str(tmp_path / "out"), "--decode-workers", "0",
                 "--no-progress"]) == 0
    frame = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert frame["gender_pred"].notna().sum() == 4 and frame["error"].notna().sum() == 1
    bomb = frame[frame["error"].notna()].iloc[0]
    assert bomb["path"].endswith("bomb.png") and "decompression bomb" in bomb["error"]
    printed = capsys.readouterr().out
    assert "4 images predicted" in printed and "1 unreadable" in printed and "bomb.png: decompression bomb" in printed


# ---------------------------------------------------------------------------------------- CSVs
def _csv_images(folder: Path, n: int = 4) -> list[str]:
    folder.mkdir(exist_ok=True)
    for i in range(n):
        _face(i).save(folder / f"f{i}.jpg")
    return [f"f{i}.jpg" for i in range(n)]


CSV_CASES = {
    # name -> (file text from the image names, rows read, text a problem/error must contain, row it names)
    "bom": (lambda f: "\ufefffile,gender,race,age\n" + "".join(f"{x},Male,White,30\n" for x in f), 4, None, None),
    "semicolon": (lambda f: "file;gender;race;age\n" + "".join(f"{x};Female;Black;41\n" for x in f), 4, None, None),
    "unknown_labels": (lambda f: "file,gender,race,age\n" + f"{f[0]},robot,White,30\n"
                       + "".join(f"{x},Male,White,30\n" for x in f[1:]), 4, "unknown gender label 'robot'", 2),
    "duplicate_rows": (lambda f: "file,gender,age\n" + "".join(f"{x},Male,30\n" for x in f) + f"{f[1]},Male,30\n",
                       4, "duplicate of row 3", 6),
    "missing_image": (lambda f: "file,gender,age\n" + "".join(f"{x},Male,30\n" for x in f) + "gone.jpg,Male,30\n",
                      4, "image not found", 6),
    "missing_label_column": (lambda f: "file,age\n" + "".join(f"{x},30\n" for x in f), 4, None, None),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_label_csv_rows_are_read_or_reported_by_row(case, tmp_path):
    from facefair.data.readers import read_dataset
    text, rows, problem, row = CSV_CASES[case]
    csv = tmp_path / "labels.csv"
    csv.write_text(text(_csv_images(tmp_path)), encoding="utf-8")
    table = read_dataset(csv)
    assert len(table.frame) == rows                               # every good row is kept
    if problem is None:
        assert not table.problems and (table.frame["age"] > 0).all()
    else:
        messages = [str(p) for p in table.problems]
        assert any(problem in m and f"labels.csv:{row}" in m for m in messages), messages
    if case == "bom":
        assert (table.frame["gender"] == "Male").all()            # the BOM did not eat the first header


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("gender,race,age\nMale,White,30\n", "no image column"),
    ("file,gender\n", "no rows"),
])
def test_label_csv_that_cannot_start_a_run_is_one_line_naming_it(text, message, tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--data", str(csv), "--out-dir", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(csv) in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "last.pt").exists() and not (out / "report.json").exists()


# --------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("text, message", [
    ("trian:\n  epochs: 2\n", "unknown section 'trian' (did you mean 'train'?)"),
    ("train:\n  epohcs: 2\n", "unknown train option 'epohcs' (did you mean 'epochs'?)"),
    ("train:\n  lr: fast\n", "train.lr: expected a number, got 'fast'"),
    ("augment:\n  scale: [0.9]\n", "augment.scale: expected 2 values"),
    ("train: [\n", "line 2: not valid YAML"),
    ("- train\n- model\n", "must be a mapping of sections"),
    ("model:\n  image_size: 100000\n", "model.image_size: expected 0 (the backbone's default) or a size from 16"),
    ("model:\n  dropout: 5\n", "model.dropout: expected a probability in [0, 1)"),
])
def test_config_problems_stop_in_one_line_naming_the_file_and_key(text, message, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(config) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_malformed_key_value_flag_is_one_line(tmp_path, capsys):
    assert main(["train", "--task-weights", "age", "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--task-weights: 'age' is not KEY=VALUE" in err and len(err.splitlines()) == 1


def test_augment_is_settable_from_the_command_line():
    from facefair.cli import build_parser
    from facefair.config import config_from_args
    args = build_parser().parse_args(["train", "--augment-scale", "0.9", "1.1", "--no-augment-flip",
                                      "--augment-rotate-degrees", "3"])
    augment = config_from_args(args).augment
    assert augment.scale == (0.9, 1.1) and augment.flip is False and augment.rotate_degrees == 3.0


# ----------------------------------------------------------------------------------- checkpoints
class _RunsCode:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("case, message", [
    ("pickle_with_code", "refused to load"),
    ("truncated_safetensors", "unreadable or truncated"),
    ("empty_pt", "empty file"),
    ("random_bytes_pt", "not a readable checkpoint"),
])
def test_checkpoint_problems_stop_predict_in_one_line_naming_the_file(case, message, model_dir, image_folder,
                                                                     tmp_path, capsys):
    import shutil

    import torch
    if case == "pickle_with_code":
        bad = tmp_path / "evil.pt"
        torch.save({"model": {}, "tasks": [], "model_state": {}, "x": _RunsCode(tmp_path / "touched")}, bad)
        named = bad
    elif case == "truncated_safetensors":
        bad = tmp_path / "model"
        shutil.copytree(model_dir, bad)
        named = bad / "model.safetensors"
        named.write_bytes(named.read_bytes()[:5000])
    else:
        bad = named = tmp_path / "model.pt"
        bad.write_bytes(b"" if case == "empty_pt" else np.random.default_rng(0).bytes(3000))
    out = tmp_path / "out"
    assert main(["predict", str(bad), str(image_folder), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(named) in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "predictions.csv").exists() and not (tmp_path / "touched").exists()


@pytest.mark.parametrize("name", list(IMAGE_CASES))
def test_align_reads_the_photo_or_names_why_not(name, image_folder):
    pytest.importorskip("facefair.align.chips")
    from facefair.align.pipeline import AlignConfig, process_photo

    class NoFaces:  # the decoder is under test, not a detector
        def detect(self, image):
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            return []

    result = process_photo(str(image_folder / name), NoFaces(), AlignConfig())
    expected_error = IMAGE_CASES[name][1]
    if expected_error is None:
        assert result.error is None and result.width > 0
    else:
        assert result.error is not None and result.error.startswith("unreadable") and not result.faces



# ------------------------------------------------- issue 32: finished work, exit codes, odd files
def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _fake_run(model_dir: Path, tmp_path: Path) -> Path:
    """A run folder as training leaves it: the model, config.yaml and the labelled test predictions."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    (run / "config.yaml").write_text("data:\n  data: /somewhere/UTKFace\n")
    (run / "predictions.csv").write_text("path,gender,gender_true,gender_pred\na.jpg,Male,Male,Male\n")
    return run


@pytest.mark.parametrize("out", ["run", "run/"])
def test_predict_never_replaces_the_predictions_of_a_run(out, model_dir, tmp_path, capsys):
    # Issue 32: `predict RUN photo.jpg --out RUN` replaced the run's 4,031 labelled test rows with one.
    run = _fake_run(model_dir, tmp_path)
    before = (run / "predictions.csv").read_text()
    photo = tmp_path / "photo.jpg"
    _face(0).save(photo)
    assert main(["predict", str(run), str(photo), "--out", str(tmp_path / out), "--no-progress"]) == 2
    _one_line_error(capsys, "run or model folder", "give another folder")
    assert (run / "predictions.csv").read_text() == before


def test_predict_keeps_an_existing_predictions_table_unless_told_to_overwrite(model_dir, tmp_path, capsys):
    photo, out = tmp_path / "photo.jpg", tmp_path / "out"
    _face(0).save(photo)
    out.mkdir()
    (out / "predictions.csv").write_text("path,gender_pred\nearlier.jpg,Male\n")
    assert main(["predict", str(model_dir), str(photo), "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, str(out / "predictions.csv"), "--overwrite")
    assert "earlier.jpg" in (out / "predictions.csv").read_text()
    assert main(["predict", str(model_dir), str(photo), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert pd.read_csv(out / "predictions.csv")["path"].tolist() == [str(photo)]


@pytest.mark.parametrize("command", ["predict", "audit", "export", "train --out", "train --out-dir", "evaluate",
                                     "card"])
def test_out_that_is_an_existing_file_is_one_line(command, model_dir, image_folder, tmp_path, capsys):
    # Issue 32: a traceback ending in FileExistsError.
    from test_audit_bootstrap import synthetic
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me\n")
    predictions = tmp_path / "predictions.csv"
    synthetic(200, seed=1).to_csv(predictions, index=False)
    labels = tmp_path / "faces" / "labels.csv"
    labels.parent.mkdir()
    labels.write_text("file,gender,age\n" + "".join(f"{x},Male,30\n" for x in _csv_images(labels.parent, 8)))
    run = _fake_run(model_dir, tmp_path)
    argv = {"predict": ["predict", str(model_dir), str(image_folder)],
            "audit": ["audit", str(predictions), "--n-boot", "0"],
            "export": ["export", str(model_dir), "--safetensors"],
            "train --out": ["train", "--data", str(labels), "--epochs", "1", "--image-size", "32", "--no-progress"],
            "train --out-dir": ["train", "--data", str(labels), "--epochs", "1", "--image-size", "32", "--no-progress"],
            "evaluate": ["evaluate", str(run)],
            "card": ["card", str(run)]}[command]
    flag = "--out-dir" if command == "train --out-dir" else "--out"
    assert main([*argv, flag, str(taken)]) == 2
    _one_line_error(capsys, str(taken), "is a file")
    assert taken.read_text() == "keep me\n"


def test_predict_with_nothing_readable_fails(model_dir, tmp_path, capsys):
    # Issue 32: "0 images predicted ... 2 unreadable", exit 0.
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(model_dir), str(folder), "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, "no image", "2 unreadable", "error column")
    assert pd.read_csv(out / "predictions.csv")["error"].notna().sum() == 2   # each row says why
    # Raw photos: none readable is an error too (photos read without a face are an answer: exit 0).
    pytest.importorskip("dlib")
    assert main(["predict", str(model_dir), str(folder), "--out", str(tmp_path / "photos"), "--detect", "dlib-hog",
                 "--no-progress"]) == 2
    _one_line_error(capsys, "none of the 2 photos", "could be read", "no_face.csv")


def test_dangling_symlink_gets_a_row_and_is_counted(model_dir, tmp_path, capsys):
    # Issue 32: a dangling symlink in a predict folder was skipped with no row and no error.
    folder = tmp_path / "faces"
    _csv_images(folder, 3)
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(model_dir), str(folder), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "predictions.csv").set_index("path")
    assert len(frame) == 4 and frame["gender_pred"].notna().sum() == 3
    error = frame.loc[str(folder / "gone.jpg"), "error"]
    assert "broken symbolic link" in error and "deleted.jpg" in error
    printed = capsys.readouterr().out
    assert "3 images predicted" in printed and "1 unreadable" in printed and "gone.jpg: broken symbolic link" in printed


@pytest.fixture(scope="module")
def model_64(tmp_path_factory) -> Path:
    import torch

    from facefair.models.multitask import ModelConfig, MultiTaskModel
    from facefair.models.serialization import save_pretrained
    from facefair.tasks import make_tasks
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(backbone="mobilenetv2", image_size=64, dropout=0.0),
                           make_tasks(["gender", "age"], "race5"), load_weights=False)
    return save_pretrained(model.state_dict(), model.describe(), tmp_path_factory.mktemp("model64"))


def test_faces_far_smaller_than_the_training_chips_are_flagged(model_64, tmp_path, capsys):
    # Issue 32: 1x1 and 20x20 images got normal-looking predictions.
    folder = tmp_path / "faces"
    folder.mkdir()
    for side in (1, 20, 64, 200):
        _face(side, (side, side)).save(folder / f"side{side:03d}.png")
    out = tmp_path / "out"
    assert main(["predict", str(model_64), str(folder), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    notes = dict(zip(frame["path"].map(lambda p: Path(p).name), frame["note"]))
    assert frame["gender_pred"].notna().all()                       # still predicted ...
    assert "small face: 1x1 px" in notes["side001.png"] and "small face: 20x20 px" in notes["side020.png"]
    assert pd.isna(notes["side064.png"]) and pd.isna(notes["side200.png"])   # ... and only those flagged
    err = capsys.readouterr().err
    assert "2 of 4 faces predicted are far smaller than the model's training chips" in err


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"].update(image_size=100_000), "model.image_size: expected 0"),
    (lambda c: c["model"].update(image_size=-3), "model.image_size"),
    (lambda c: c["model"].update(image_size="big"), "model.image_size"),
    (lambda c: c["model"].update(dropout=7), "model.dropout"),
    (lambda c: c["model"].update(age_head="bogus"), "model.age_head"),
    (lambda c: c["tasks"][0].update(classes=[]), "task 'gender': a classification task needs 2 to 1000 classes"),
])
def test_absurd_model_config_json_is_refused_naming_it(change, message, model_dir, image_folder, tmp_path, capsys):
    # Issue 32: image_size 100000 in config.json was a kill by the out-of-memory killer (exit 137, no message).
    import json
    import shutil
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    change(config)
    (bad / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert main(["predict", str(bad), str(image_folder), "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, str(bad / "config.json"), message)
    assert not (out / "predictions.csv").exists()


def test_evaluate_finds_the_data_of_a_run_from_another_folder(utk_sample, tmp_path, monkeypatch, capsys):
    # Issue 32: "dataset not found: ../shared/data/utkface/UTKFace" when evaluate ran elsewhere; the
    # run stored the data path relative to where training ran.
    import shutil

    import yaml
    work = tmp_path / "work"
    data = work / "data" / "UTKFace"
    data.parent.mkdir(parents=True)
    shutil.copytree(utk_sample, data)
    monkeypatch.chdir(work)
    assert main(["train", "--data", "data/UTKFace", "--limit", "80", "--epochs", "1", "--image-size", "32",
                 "--batch-size", "16", "--tasks", "gender", "age", "--no-progress", "--no-tensorboard",
                 "--cache-dir", "", "--framing-sample", "0", "--out", "runs/r"]) == 0
    run = work / "runs" / "r"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["data"] == str(data)                     # stored resolved
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(run), "--no-tta"]) == 0
    # A run saved before paths were resolved: relative to where training ran (above the run folder).
    saved["data"]["data"] = "data/UTKFace"
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["evaluate", str(run), "--no-tta", "--out", str(elsewhere / "eval")]) == 0
    capsys.readouterr()
    shutil.move(data, tmp_path / "moved")
    assert main(["evaluate", str(run), "--no-tta", "--out", str(elsewhere / "eval2")]) == 2
    _one_line_error(capsys, "data/UTKFace", "--data PATH")
