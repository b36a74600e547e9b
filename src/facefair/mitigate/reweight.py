"""Group reweighting (``--method reweight --group-by race gender``).

Every training row's loss is weighted by 1 / size of its joint ``group_by`` group, rescaled so the
weights average 1 over the labelled rows: each group then carries the same total weight, so a
small group counts as much as a large one without repeating any image (unlike balanced
sampling, which draws small groups' images more often).  Needs the group labels of the training
rows only.  A row missing one of the attributes keeps weight 1 (an average row): treating the
few such rows as a group of their own would give each of them the weight of a whole group.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch

from facefair.data.splits import group_keys
from facefair.train.methods import TrainingMethod, method_options, register_method
from facefair.train.sampling import balanced_weights

log = logging.getLogger("facefair")


@register_method("reweight")
class ReweightMethod(TrainingMethod):
    """Standard training with per-row loss weights that equalise the groups' total weight."""

    OPTIONS: dict = {}

    def __init__(self, config):
        super().__init__(config)
        method_options(config, self.OPTIONS, "reweight")
        if not config.train.group_by:
            raise ValueError("--method reweight needs --group-by (e.g. race gender)")
        self.weights: torch.Tensor | None = None

    def setup(self, trainer) -> None:
        frame = trainer.data.splits["train"].frame
        by = list(self.config.train.group_by)
        weights = balanced_weights(frame, by)
        keys = group_keys(frame, by)
        summary = pd.Series(weights, index=keys.values).groupby(level=0).agg(["size", "first"])
        log.info("reweight by %s: %d groups, weights %.2f..%.2f (largest group %s, smallest %s); "
                 "%d rows without a group keep weight 1", "x".join(by), len(summary), summary["first"].min(),
                 summary["first"].max(), summary["size"].idxmax(), summary["size"].idxmin(),
                 int(frame[by].isna().any(axis=1).sum()))
        self.weights = torch.as_tensor(weights, dtype=torch.float32, device=trainer.device)

    def sample_weight(self, trainer, positions) -> torch.Tensor:
        return self.weights[torch.as_tensor(positions, device=self.weights.device)]
