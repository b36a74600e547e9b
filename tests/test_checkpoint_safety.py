"""No model or training-state file can run code when loaded, and every bad file is one clear line.

The model here is untrained and tiny (no real data needed): what is tested is the file format.
"""

import json
import pickle

import numpy as np
import pytest
import torch

from facefair.cli import main
from facefair.models.multitask import ModelConfig, MultiTaskModel, load_model
from facefair.models.serialization import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_checkpoint,
                                           save_pretrained)
from facefair.tasks import make_tasks
from facefair.train.checkpoint import load_checkpoint, rng_state, set_rng_state


class _TouchesAFile:
    """What a malicious checkpoint does: unpickling it calls ``open(path, 'w')``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _model() -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
                          make_tasks(["gender", "race", "age"], "race5"), load_weights=False).eval()


def _legacy_checkpoint(model: MultiTaskModel, **extra) -> dict:
    return {**model.describe(), "epoch": 0, "model_state": model.state_dict(), "best_score": 0.5, **extra}


def _faces(tmp_path, n=2):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"face{i}.jpg")
    return folder


def test_pickle_that_would_touch_a_file_does_not_and_predict_says_why(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save(_legacy_checkpoint(_model(), payload=_TouchesAFile(marker)), evil)
    faces = _faces(tmp_path)
    out = tmp_path / "predicted"
    assert main(["predict", str(evil), str(faces), "--out", str(out), "--decode-workers", "0"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists() and not out.exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(evil) in err and "refused" in err and "--trust-checkpoint" in err
    # The same refusal for every loader: the library call, evaluate/export/serve (all load_model)
    # and the training-state reader --resume uses.
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_model(evil)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(evil, torch.device("cpu"))
    assert main(["export", str(evil), "--safetensors", "--out", str(tmp_path / "exported")]) == 2
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_run_folder_round_trip_needs_no_pickle(tmp_path, monkeypatch):
    model = _model()
    save_pretrained(model.state_dict(), {**model.describe(), "epoch": 3}, tmp_path / "run")
    config = json.loads((tmp_path / "run" / CONFIG_NAME).read_text())
    assert config["architecture"] == "multitask" and config["tasks"][1]["classes"][0] == "White"

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a folder model must load without pickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    x = torch.rand(2, 3, 32, 32)
    for path in (tmp_path / "run", tmp_path / "run" / WEIGHTS_NAME, tmp_path / "run" / CONFIG_NAME,
                 tmp_path / "run" / "best.pt"):  # best.pt: the name older commands use for a run's model
        loaded = load_model(path)
        with torch.no_grad():
            for name, value in model(x).items():
                assert torch.allclose(value, loaded(x)[name], atol=1e-6), (path, name)
    assert read_checkpoint(tmp_path / "run")["epoch"] == 3


def test_old_pt_checkpoints_load_with_weights_only(tmp_path):
    model = _model()
    torch.save(_legacy_checkpoint(model), tmp_path / "best.pt")  # tensors + plain data: safe to read
    loaded = load_model(tmp_path / "best.pt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert load_model(tmp_path).tasks == model.tasks  # a folder with only best.pt: an old run


def test_old_last_pt_with_numpy_rng_needs_trust_and_new_state_does_not(tmp_path):
    model = _model()
    old = tmp_path / "old_last.pt"
    torch.save({**_legacy_checkpoint(model), "numpy_rng": np.random.get_state()}, old)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(old, torch.device("cpu"))
    assert load_checkpoint(old, torch.device("cpu"), trust=True)["numpy_rng"][0] == "MT19937"

    np.random.seed(7), torch.manual_seed(7)
    state = {**_legacy_checkpoint(model), "rng": rng_state()}
    expected = (np.random.rand(3), torch.rand(3))
    torch.save(state, tmp_path / "last.pt")
    restored = torch.load(tmp_path / "last.pt", weights_only=True)  # what load_checkpoint does
    np.random.seed(0), torch.manual_seed(0)
    set_rng_state(restored)
    assert np.array_equal(np.random.rand(3), expected[0]) and torch.equal(torch.rand(3), expected[1])


@pytest.mark.parametrize("damage, message", [
    ("truncate_weights", "model.safetensors: unreadable or truncated"),
    ("bad_json", "config.json: not valid JSON"),
    ("foreign_json", "not a facefair model config"),
    ("wrong_shapes", "weights do not fit"),
    ("no_weights", "model.safetensors is missing"),
])
def test_damaged_model_folders_are_one_line_naming_the_file(tmp_path, damage, message):
    model = _model()
    run = tmp_path / "run"
    save_pretrained(model.state_dict(), model.describe(), run)
    if damage == "truncate_weights":
        (run / WEIGHTS_NAME).write_bytes((run / WEIGHTS_NAME).read_bytes()[:1000])
    elif damage == "bad_json":
        (run / CONFIG_NAME).write_text('{"format": "facefair-model", ')
    elif damage == "foreign_json":
        (run / CONFIG_NAME).write_text('{"model_type": "bert"}')
    elif damage == "wrong_shapes":
        config = json.loads((run / CONFIG_NAME).read_text())
        config["tasks"][1]["classes"] = ["A", "B"]
        (run / CONFIG_NAME).write_text(json.dumps(config))
    elif damage == "no_weights":
        (run / WEIGHTS_NAME).unlink()
    target = run / CONFIG_NAME if damage == "no_weights" else run
    with pytest.raises((CheckpointError, FileNotFoundError), match=message) as error:
        load_model(target)
    assert str(run) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"\x80\x02garbage that is no pickle", "not a readable checkpoint"),
    (b"PK\x03\x04 a zip that stops", "not a readable checkpoint"),
])
def test_broken_pt_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_pt_that_is_not_a_facefair_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing model, tasks, model_state"):
        load_model(tmp_path / "other.pt")


def test_export_safetensors_turns_a_trusted_old_checkpoint_into_a_safe_folder(tmp_path):
    model = _model()
    torch.save({**_legacy_checkpoint(model), "numpy_rng": np.random.get_state()}, tmp_path / "old.pt")
    assert main(["export", str(tmp_path / "old.pt"), "--safetensors", "--out", str(tmp_path / "safe")]) == 2
    assert main(["export", str(tmp_path / "old.pt"), "--trust-checkpoint", "--safetensors",
                 "--out", str(tmp_path / "safe")]) == 0
    loaded = load_model(tmp_path / "safe")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
