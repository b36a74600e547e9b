"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021): during training, mix
the per-channel feature statistics (mean and standard deviation over space) of each image with
another image's, after the backbone stages at strides 4, 8 and 16 (the paper's res1-res3).

Those statistics carry much of an image's "style" (light, colour, sharpness: how it was taken)
and little of its content, so mixing them asks the network to answer the same for a face however
it was photographed: the issue's transfer lever "style randomisation" (docs/transfer.md).  It is
a training-time hook only: in eval mode the stages are untouched, and nothing of it is saved.
"""

from __future__ import annotations

import torch
from torch import nn

#: The Beta(alpha, alpha) mixing weight and the stages (output strides) of the paper.
ALPHA = 0.1
STRIDES = (4, 8, 16)
EPS = 1e-6


def mix_styles(x: torch.Tensor, probability: float, alpha: float = ALPHA) -> torch.Tensor:
    """``x`` (N, C, H, W) with, with ``probability`` for the batch, each image's channel means and
    standard deviations replaced by ``lam x its own + (1 - lam) x a random other image's`` (lam ~
    Beta(alpha, alpha) per image); the normalised content is kept.  Uses torch's global RNG, so a
    resumed run draws what an uninterrupted one would.

    >>> import torch
    >>> _ = torch.manual_seed(0)  # the other images are drawn at random; one in 24 draws is x itself
    >>> x = torch.randn(4, 3, 5, 5)
    >>> torch.equal(mix_styles(x, probability=0.0), x)
    True
    >>> mixed = mix_styles(x, probability=1.0)
    >>> mixed.shape == x.shape and not torch.allclose(mixed, x)
    True
    """
    if len(x) < 2 or probability <= 0 or torch.rand(()) >= probability:
        return x
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x.var(dim=(2, 3), keepdim=True) + EPS).sqrt()
    # The statistics are a style to copy, not a path for gradients (as in the paper).
    mean, std = mean.detach(), std.detach()
    content = (x - mean) / std
    lam = torch.distributions.Beta(alpha, alpha).sample((len(x), 1, 1, 1)).to(x.device, x.dtype)
    other = torch.randperm(len(x), device=x.device)
    mixed_mean = lam * mean + (1 - lam) * mean[other]
    mixed_std = lam * std + (1 - lam) * std[other]
    return content * mixed_std + mixed_mean


def add_mixstyle(backbone: nn.Module, probability: float, strides=STRIDES) -> list:
    """Hook :func:`mix_styles` onto the outputs of ``backbone``'s stages at ``strides`` (timm's
    ``feature_info``); active only while the backbone is in training mode.  Returns the hook
    handles (``handle.remove()`` takes one off)."""
    if not 0 < probability <= 1:
        raise ValueError(f"mixstyle probability must be in (0, 1], got {probability}")
    stages = [info["module"] for info in getattr(backbone, "feature_info", []) if info.get("reduction") in strides]
    if not stages:
        raise ValueError(f"mixstyle: {type(backbone).__name__} names no stages at strides {list(strides)} "
                         f"(timm feature_info); train without --mixstyle")
    modules = dict(backbone.named_modules())

    def hook(module, inputs, output):
        if module.training and isinstance(output, torch.Tensor) and output.ndim == 4:
            return mix_styles(output, probability)
        return output

    return [modules[name].register_forward_hook(hook) for name in stages]
