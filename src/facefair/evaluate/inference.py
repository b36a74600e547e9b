"""Running a model over batches: probabilities (classification) and years (age) per row, with the
one flip-TTA every command uses.  :mod:`facefair.table` turns them into the predictions
table."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from facefair.data.batches import to_float
from facefair.flags import TTA_DEFAULT
from facefair.runtime import autocast_context


def predict_tensor(model, x: torch.Tensor, tta: bool = TTA_DEFAULT) -> dict[str, torch.Tensor]:
    """Probabilities (classification) or years (age) per task for a normalised NCHW batch; with
    ``tta`` the mean over the batch and its mirror image (a mirrored face is an equally plausible
    face, and averaging removes left/right noise).  The one mirror-TTA every command uses."""
    predicted = model.predict(model(x))
    if tta:
        mirrored = model.predict(model(torch.flip(x, dims=[3])))
        predicted = {k: (v + mirrored[k]) / 2 for k, v in predicted.items()}
    return predicted


@torch.no_grad()
def predict_batches(model, batches, n_rows: int, device: torch.device, *, tta: bool = TTA_DEFAULT, amp: bool = True,
                    bf16: bool = False, progress=None, rows: Optional[np.ndarray] = None
                    ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Probabilities (classification) or years (age) for every row (or just ``rows``); rows whose
    image could not be read, or that were not asked for, stay NaN; read errors are returned."""
    model.eval()
    outputs = {t.name: np.full((n_rows, t.num_classes) if t.kind == "classification" else (n_rows,), np.nan,
                               dtype=np.float32) for t in model.tasks}
    errors: list[str] = []
    for images, positions, batch_errors in batches.iterate(np.arange(n_rows) if rows is None else rows):
        errors.extend(batch_errors)
        if len(positions) == 0:
            continue
        x = to_float(images, device)
        with autocast_context(device, amp, bf16):
            predicted = predict_tensor(model, x, tta)
        for name, value in predicted.items():
            outputs[name][positions] = value.float().cpu().numpy()
        if progress is not None:
            progress.update(len(positions))
    return outputs, errors


