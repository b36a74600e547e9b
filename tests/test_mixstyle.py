"""MixStyle: feature statistics mixed between images in training, nothing changed in evaluation."""


import pytest
import torch

from facefair.models.backbones import create_backbone
from facefair.train import mixstyle
from facefair.train.mixstyle import add_mixstyle, mix_styles


def _normalised(x: torch.Tensor) -> torch.Tensor:
    mean, std = x.mean(dim=(2, 3), keepdim=True), (x.var(dim=(2, 3), keepdim=True) + mixstyle.EPS).sqrt()
    return (x - mean) / std


def test_mixing_keeps_each_image_content_and_takes_statistics_from_within_the_batch():
    torch.manual_seed(0)
    # Four images whose channels have very different means: a "style" that is easy to trace.
    x = torch.randn(4, 3, 8, 8) + torch.tensor([0.0, 10.0, 20.0, 30.0]).view(4, 1, 1, 1)
    mixed = mix_styles(x, probability=1.0)
    assert torch.allclose(_normalised(mixed), _normalised(x), atol=1e-3)  # the content is the image's own
    means, original = mixed.mean(dim=(2, 3)), x.mean(dim=(2, 3))
    # Every new mean is a convex mix of two of the batch's means: inside the batch's range.
    assert (means >= original.min() - 1e-4).all() and (means <= original.max() + 1e-4).all()
    assert not torch.allclose(means, original, atol=1e-2)
    assert torch.equal(mix_styles(x, probability=0.0), x)
    assert torch.equal(mix_styles(x[:1], probability=1.0), x[:1])  # nobody to mix with


def test_hooks_act_in_training_only_and_refuse_a_backbone_without_stages():
    backbone = create_backbone("mobilenetv2")
    handles = add_mixstyle(backbone, probability=1.0)
    assert len(handles) == 3  # strides 4, 8, 16
    x = torch.randn(4, 3, 64, 64)
    backbone.eval()
    with torch.no_grad():
        plain = backbone(x)
        torch.manual_seed(0)
        assert torch.equal(backbone(x), plain)  # evaluation: untouched
        backbone.train()
        trained = backbone(x)
        for handle in handles:
            handle.remove()
        torch.manual_seed(0)
        without = backbone(x)
    assert not torch.allclose(trained, without, atol=1e-4)
    with pytest.raises(ValueError, match="train without --mixstyle"):
        add_mixstyle(torch.nn.Linear(3, 3), probability=0.5)
    with pytest.raises(ValueError, match="probability"):
        add_mixstyle(backbone, probability=1.5)


def test_a_run_trains_with_mixstyle_and_saves_no_trace_of_it(utk_sample, tmp_path):
    from facefair.config import DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    from facefair.models.serialization import read_checkpoint
    from facefair.train.loop import train

    config = RunConfig(data=DataConfig(data=str(utk_sample), cache_dir=str(tmp_path / "cache"), workers=1, limit=120),
                       model=ModelConfig(backbone="mobilenetv2", image_size=32),
                       train=TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=32, progress=False,
                                         tensorboard=False, tta=False, mixstyle=0.5))
    report = train(config)
    assert report["config"]["train"]["mixstyle"] == 0.5 and 0 <= report["metrics"]["gender"]["accuracy"] <= 1
    saved = read_checkpoint(tmp_path / "run")["model_state"]
    assert not any("mixstyle" in key for key in saved)
