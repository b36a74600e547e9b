"""Row weights that equalise the total weight of each demographic group (joint label combination).

One function serves balanced sampling (draw probability ∝ weight, a WeightedRandomSampler) and
group reweighting of the loss (``facefair.mitigate``), so both treat groups the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from facefair.data.splits import group_keys


def balanced_weights(frame: pd.DataFrame, by: Sequence[str]) -> np.ndarray:
    """Weight ∝ 1 / size of the row's joint ``by`` group, mean 1 over the rows that have every
    attribute.  Rows missing one get weight 1: as their own "group" two unlabelled images would
    otherwise be drawn as often as all the faces of a real group."""
    missing = [c for c in by if c not in frame]
    if missing:
        raise ValueError(f"cannot balance by {missing}: not in the data")
    labelled = frame[list(by)].notna().all(axis=1).to_numpy()
    weights = np.ones(len(frame))
    if labelled.any():
        keys = group_keys(frame[labelled], list(by))
        inverse = 1.0 / keys.map(keys.value_counts()).to_numpy(dtype=float)
        weights[labelled] = inverse * (labelled.sum() / inverse.sum())
    return weights
