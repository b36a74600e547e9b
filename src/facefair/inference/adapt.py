"""Test-time BatchNorm adaptation (AdaBN, Li et al., 2016) for ``--adapt-bn``.

A network's BatchNorm layers normalise with the mean and variance of its training faces.  Faces
from another source (other cameras, lighting, compression) shift those statistics, and a CNN
fine-tuned on UTKFace reads such shifts as race.  Re-estimating the statistics over the faces
being predicted (their images only; no labels) removes the shift that is shared by the whole
set.  The answer for a face then depends on the set it arrives with, so this is for a batch of
faces from one source, never for one upload at a time; the weights are not changed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from facefair.flags import ADAPT_MIN_FACES as MIN_FACES

__all__ = ["MIN_FACES", "adapt_batchnorm"]


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, batches, rows: np.ndarray, device: torch.device, *, tta: bool,
                    autocast) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated over ``rows`` of
    ``batches`` (and their mirror images with ``tta``, as prediction sees them): the mean over every
    face, the variance as the size-weighted mean of the batches' variances.

    Only the BatchNorm layers run in training mode (dropout and the rest stay in eval mode);
    unreadable images are skipped.  ``model`` itself is left as it was.

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_FACES` readable faces, or a network with no BatchNorm layer.
    """
    from facefair.data.batches import to_float

    adapted = copy.deepcopy(model).eval()
    layers = [m for m in adapted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError("--adapt-bn: this network has no BatchNorm layer to adapt; predict without --adapt-bn")
    _check_count(len(rows))
    for layer in layers:
        layer.reset_running_stats()
        layer.train()
    seen, passes = 0, 0
    with autocast:
        for images, positions, _ in batches.iterate(rows):
            if len(positions) == 0:
                continue
            seen += len(positions)
            x = to_float(images, device)
            for view in (x, torch.flip(x, dims=[3])) if tta else (x,):
                # Each batch weighted by its size, so the mean is every face's and a small last
                # batch counts for no more than its faces (BatchNorm's cumulative mode weighs
                # every batch alike).
                passes += len(x)
                for layer in layers:
                    layer.momentum = len(x) / passes
                adapted(view)
    _check_count(seen, "readable ")
    return adapted.eval()


def _check_count(faces: int, which: str = "") -> None:
    if faces < MIN_FACES:
        raise ValueError(f"--adapt-bn needs at least {MIN_FACES} faces from one source to estimate their statistics, "
                         f"got {faces} {which}faces: predict without --adapt-bn, or add more faces from the same source")
