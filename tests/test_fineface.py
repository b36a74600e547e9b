"""FineFACE's training step and its model after training: sub-step failures, autograd graphs only
where they are back-propagated, probabilities averaged over the eight heads, and a FineFACE
checkpoint exported to ONNX and served like any other model."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facefair.config import RunConfig
from facefair.mitigate.fineface import FineFaceMethod, FineFaceModel
from facefair.models.multitask import ModelConfig, load_model
from facefair.tasks import make_tasks

TASKS = ("gender", "race", "age")


def _model(age_head: str = "regression") -> FineFaceModel:
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenetv2", image_size=32, tasks=list(TASKS), age_head=age_head)
    return FineFaceModel(config, make_tasks(TASKS, "race5"), expert_width=32, load_weights=False)


def _trainer(model, outcomes):
    """What FineFaceMethod.train_step reads from the Trainer; ``outcomes`` says which optimiser
    steps succeed (a non-finite loss is refused by the real Trainer.optimizer_step)."""
    calls = []

    def optimizer_step(loss):
        calls.append(float(loss.detach()))
        return outcomes[len(calls) - 1]

    def loss_fn(outputs, targets, weight):
        loss = outputs["gender"].float().pow(2).mean()
        return loss, {"gender": float(loss.detach())}

    config = RunConfig()
    config.train.method = "fineface"
    trainer = SimpleNamespace(config=config, model=model, loss_fn=loss_fn, device=torch.device("cpu"), label_weights=None,
                              optimizer_step=optimizer_step, scheduler=SimpleNamespace(last_epoch=0))
    return trainer, calls


@pytest.mark.parametrize("outcomes, stepped", [
    ((True, False, True, True, True), True),     # sub-step 2 fails after sub-step 1 updated the weights
    ((False, True, True, True, True), True),     # the first fails, the other four still train
    ((False,) * 5, False),                       # nothing was taken: the batch is skipped
])
def test_a_failed_sub_step_does_not_report_a_trained_batch_skipped(outcomes, stepped):
    model = _model().train()
    trainer, calls = _trainer(model, outcomes)
    method = FineFaceMethod(trainer.config)
    _, parts, taken = method.train_step(trainer, torch.randn(4, 3, 32, 32), {}, np.arange(4))
    assert len(calls) == 5 and taken is stepped
    names = ["expert3", "expert2", "expert1", "attention", "concat"]
    assert {k for k in parts if k.startswith("loss_")} == {f"loss_{n}" for n, ok in zip(names, outcomes) if ok}


def test_values_only_experts_build_no_autograd_graph():
    model = _model().train()
    done = model.run(torch.randn(2, 3, 32, 32), experts=(2,), detached=(0, 1))
    assert done.outputs[2]["gender"].grad_fn is not None
    for i in (0, 1):
        assert done.outputs[i]["gender"].grad_fn is None and done.maps[i].grad_fn is None


@pytest.mark.parametrize("age_head", ["regression", "coral"])
def test_prediction_is_the_mean_of_the_heads_probabilities(age_head):
    model = _model(age_head).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        predicted = model.predict(model(x))
        raw = model.run(x, concat=True)
        att = model.run(model.attention_crop(x, model.attention_maps(raw)), concat=True)
        heads = [*raw.outputs, raw.concat, *att.outputs, att.concat]
        for task in model.tasks:
            each = torch.stack([model.heads[task.name].predict(h[task.name].float()) for h in heads])
            assert torch.allclose(predicted[task.name], each.mean(dim=0), atol=1e-4), task.name


@pytest.fixture(scope="module")
def fineface_folder(tmp_path_factory):
    from facefair.models.serialization import save_pretrained
    model = _model().eval()
    folder = tmp_path_factory.mktemp("fineface")
    save_pretrained(model.state_dict(), model.describe(), folder)
    assert isinstance(load_model(folder), FineFaceModel)
    return folder


def test_fineface_exports_to_onnx(fineface_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from facefair.export.onnx_export import ExportConfig, export_onnx
    # export_onnx runs the file in onnxruntime and raises if it differs from PyTorch.
    result = export_onnx(fineface_folder, tmp_path / "model.onnx", ExportConfig(tta=True))
    assert set(result.max_abs_diff) == set(TASKS)
    assert max(result.max_abs_diff.values()) < 1e-3


def test_fineface_is_served(fineface_folder, utk_sample):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facefair.serve.app import create_app
    client = TestClient(create_app(fineface_folder, detect="none", device="cpu"))
    face = sorted(utk_sample.glob("*.jpg"))[0]
    response = client.post("/predict", files={"file": ("face.jpg", io.BytesIO(face.read_bytes()), "image/jpeg")})
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) == 1 and set(faces[0]["predictions"]) == {"gender", "race"} and "age" in faces[0]


def test_a_loaded_fineface_model_is_served_too(utk_sample):
    """create_app takes a loaded model of any architecture, not only MultiTaskModel."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facefair.serve.app import create_app
    client = TestClient(create_app(_model().eval(), detect="none", device="cpu"))
    face = sorted(utk_sample.glob("*.jpg"))[0]
    response = client.post("/predict", files={"file": ("face.jpg", io.BytesIO(face.read_bytes()), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json()["faces"][0]["predictions"]["gender"]["label"] in ("Male", "Female")
