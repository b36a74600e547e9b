import pytest
import torch

from facefair.models.backbones import create_backbone, load_backbone_weights, resolve_weights
from facefair.models.multitask import ModelConfig, MultiTaskModel
from facefair.tasks import make_tasks


def test_torchvision_mobilenet_weights_load_into_timm_exactly(mobilenet_weights):
    torchvision = pytest.importorskip("torchvision")
    ours = create_backbone("mobilenetv2", weights=mobilenet_weights).eval()
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(mobilenet_weights, weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, 96, 96)
    expected = torch.nn.functional.adaptive_avg_pool2d(reference.features(x), 1).flatten(1)
    assert torch.allclose(ours(x), expected, atol=1e-5)


def test_wrong_weights_fail_loudly(mobilenet_weights):
    with pytest.raises(ValueError, match="architecture"):
        load_backbone_weights(create_backbone("resnet18"), mobilenet_weights)
    with pytest.raises(FileNotFoundError):
        resolve_weights("/nonexistent.pth")
    with pytest.raises(ValueError, match="unknown local"):
        resolve_weights("local:nothing")


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2", "convnext_tiny", "efficientnetv2_s", "vit_b_16"])
def test_multitask_model_outputs(backbone):
    tasks = make_tasks(["gender", "race", "age_group", "age"], "race7")
    model = MultiTaskModel(ModelConfig(backbone=backbone, image_size=64), tasks).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["gender"].shape == (2, 2) and out["race"].shape == (2, 7) and out["age_group"].shape == (2, 9)
    assert out["age"].shape == (2,)


def test_coral_head_predicts_years():
    tasks = make_tasks(["age"], None)
    model = MultiTaskModel(ModelConfig(backbone="resnet18", image_size=32, age_head="coral"), tasks).eval()
    out = model(torch.randn(3, 3, 32, 32))
    years = model.predict(out)["age"]
    assert out["age"].shape == (3, 100) and ((years >= 0) & (years <= 100)).all()


def test_local_weights_load_into_stage_features(mobilenet_weights):
    """features_only models lack the last 1x1 conv; the stages still get the file's weights."""
    full = create_backbone("mobilenetv2", weights=mobilenet_weights).state_dict()
    stages = create_backbone("mobilenetv2", weights=mobilenet_weights, features_only=True).state_dict()
    assert len(stages) < len(full)
    assert all(torch.equal(stages[k], full[k]) for k in stages)
