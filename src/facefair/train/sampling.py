"""Row weights that equalise the total weight of each demographic group (joint label combination),
and the batches an epoch draws with them.

One weight function serves balanced sampling (draw probability ∝ weight, a WeightedRandomSampler)
and group reweighting of the loss (``facefair.mitigate``), so both treat groups the same way; one
batch function serves the training epoch and the SWA BatchNorm pass, so both see the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from facefair.data.splits import group_keys

if TYPE_CHECKING:
    import torch

    from facefair.data.prepare import SplitData
    from facefair.train.distributed import Distributed


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


def epoch_batches(split: "SplitData", epoch: int, *, seed: int, weights: Optional[np.ndarray],
                  distributed: "Distributed", per_rank_batch: int) -> Iterator[tuple["torch.Tensor", np.ndarray, list[str]]]:
    """``split``'s batches for ``epoch`` as training takes them: the epoch's shuffled order (drawn
    with replacement by ``weights`` under ``--sampler balanced``), this rank's shard of it, and full
    batches only when there is at least one (a small last batch would be one noisy optimizer step,
    and would count as much as a full one in a BatchNorm pass)."""
    from facefair.data.batches import epoch_order  # torch: not for the weights' users

    order = distributed.shard(epoch_order(len(split.frame), epoch, seed, shuffle=True, weights=weights), per_rank_batch)
    return split.batches.iterate(order, drop_last=len(order) >= per_rank_batch)
