"""Sampling weights that equalise how often each group (joint label combination) is drawn."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from facefair.data.splits import group_keys


def balanced_weights(frame: pd.DataFrame, by: Sequence[str]) -> np.ndarray:
    """Per-row weight 1 / size(group of the row) so every group of ``by`` is drawn equally often
    (what a WeightedRandomSampler over inverse group frequencies does).  Rows missing one of the
    columns form their own group rather than being dropped."""
    missing = [c for c in by if c not in frame]
    if missing:
        raise ValueError(f"cannot balance by {missing}: not in the data")
    keys = group_keys(frame, list(by))
    sizes = keys.map(keys.value_counts()).to_numpy(dtype=float)
    return 1.0 / sizes
