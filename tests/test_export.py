"""ONNX export: the exported graph (normalisation and ``model.predict`` inside) run in onnxruntime
must give what the PyTorch pipeline gives on real faces, for batch sizes 1 and 5."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from facefair.cli import main  # noqa: E402
from facefair.data.batches import to_float  # noqa: E402
from facefair.data.images import decode  # noqa: E402
from facefair.inference.engine import predict_tensor  # noqa: E402
from facefair.export.onnx_export import ExportConfig, export_onnx, read_sidecar  # noqa: E402
from facefair.models.multitask import MultiTaskModel, load_model  # noqa: E402

PROB_ATOL, YEARS_ATOL = 1e-4, 1e-3


def _faces(folder: Path, size: int, n: int = 5) -> np.ndarray:
    """uint8 NHWC real faces, decoded exactly as training and ``facefair predict`` decode them."""
    paths = sorted(folder.glob("*.jpg"))[::37][:n]
    assert len(paths) == n
    return np.stack([decode(p, size) for p in paths])


def _pytorch(model: MultiTaskModel, faces: np.ndarray, tta: bool = True) -> dict[str, np.ndarray]:
    """What evaluate/predict/serve compute (the same flip-TTA default as the export)."""
    with torch.no_grad():
        predicted = predict_tensor(model, to_float(torch.from_numpy(faces), torch.device("cpu")), tta)
    return {k: v.numpy() for k, v in predicted.items()}


def _onnx(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": images})))


def _assert_match(model: MultiTaskModel, got: dict, want: dict, batch: int) -> None:
    assert set(got) == {t.name for t in model.tasks}
    for task in model.tasks:
        if task.kind == "classification":
            assert got[task.name].shape == (batch, task.num_classes)
            np.testing.assert_allclose(got[task.name].sum(axis=1), 1, atol=1e-5)
            assert np.abs(got[task.name] - want[task.name]).max() < PROB_ATOL, task.name
        else:
            assert got[task.name].shape == (batch,)
            assert np.abs(got[task.name] - want[task.name]).max() < YEARS_ATOL, task.name


def test_cli_export_uint8_matches_pytorch_on_real_faces(tiny_run, utk_sample, tmp_path, capsys):
    assert main(["export", str(tiny_run / "best.pt"), "--onnx", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["outputs"] == ["gender", "race", "age_group", "age"] and printed["tta"] is True
    out = tmp_path / "model.onnx"
    assert printed["onnx"] == str(out) and printed["sidecar"] == str(tmp_path / "model.json")

    model = load_model(tiny_run / "best.pt")
    size = model.config.resolved_size()
    sidecar = read_sidecar(out)
    assert sidecar["input"] == {**sidecar["input"], "name": "images", "dtype": "uint8", "layout": "NCHW",
                                "shape": ["batch", 3, size, size]}
    assert sidecar["input_size"] == size and sidecar["normalisation_in_graph"] is True and sidecar["tta_in_graph"]
    assert sidecar["mean"] == pytest.approx([0.485, 0.456, 0.406]) and sidecar["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert [(t["name"], t["kind"], tuple(t["classes"])) for t in sidecar["tasks"]] == \
        [(t.name, t.kind, t.classes) for t in model.tasks]

    faces = _faces(utk_sample, size)
    want = _pytorch(model, faces)
    nchw = np.ascontiguousarray(faces.transpose(0, 3, 1, 2))
    for batch in (1, 5):  # one graph serves both: the batch axis is dynamic
        got = _onnx(out, nchw[:batch])
        _assert_match(model, got, {k: v[:batch] for k, v in want.items()}, batch)


def test_float_input_and_coral_age_head(tiny_run, utk_sample, tmp_path):
    """The other input type, and a CORAL age head (100 logits -> years inside the graph)."""
    trained = load_model(tiny_run / "best.pt")
    torch.manual_seed(0)
    coral = MultiTaskModel(replace(trained.config, age_head="coral"), trained.tasks, load_weights=False)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("heads.age.")}
    coral.load_state_dict(state, strict=False)
    coral.eval()
    checkpoint = tmp_path / "coral.pt"
    torch.save({"model": asdict(coral.config), "tasks": [t.to_dict() for t in coral.tasks],
                "model_state": coral.state_dict()}, checkpoint)

    out = tmp_path / "coral.onnx"
    result = export_onnx(checkpoint, out, ExportConfig(input_dtype="float32"))
    assert result.sidecar["input"]["dtype"] == "float32" and result.sidecar_path == tmp_path / "coral.json"
    assert result.max_abs_diff["age"] < YEARS_ATOL  # export's own onnxruntime check ran

    model = load_model(checkpoint)
    faces = _faces(utk_sample, model.config.resolved_size())
    want = _pytorch(model, faces)
    assert 0 < want["age"].min() and want["age"].max() < 100
    floats = np.ascontiguousarray(faces.transpose(0, 3, 1, 2)).astype(np.float32) / 255
    for batch in (1, 5):
        _assert_match(model, _onnx(out, floats[:batch]), {k: v[:batch] for k, v in want.items()}, batch)


def test_export_without_a_format_is_one_line(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run / "best.pt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--onnx" in err and len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_no_tta_graph_is_the_plain_prediction(tiny_run, utk_sample, tmp_path):
    """``--no-tta`` exports the single pass; the default graph's numbers differ from it (the mirror is in)."""
    model = load_model(tiny_run / "best.pt")
    faces = _faces(utk_sample, model.config.resolved_size(), n=3)
    nchw = np.ascontiguousarray(faces.transpose(0, 3, 1, 2))
    export_onnx(model, tmp_path / "plain.onnx", ExportConfig(tta=False))
    _assert_match(model, _onnx(tmp_path / "plain.onnx", nchw), _pytorch(model, faces, tta=False), 3)
    assert np.abs(_pytorch(model, faces, tta=True)["age"] - _onnx(tmp_path / "plain.onnx", nchw)["age"]).max() > 1e-3
