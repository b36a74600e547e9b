"""Stochastic weight averaging (Izmailov et al., 2018) for ``--swa-epochs N``.

The schedule's cosine ends ``N`` epochs early at ``swa_lr_scale x lr`` and holds that rate; the
weights at the end of each of those epochs are averaged.  Unlike an EMA of a schedule that decays
to zero, the constant rate keeps the weights moving, so the average is over genuinely different
points.  Averaged weights produce features whose statistics no epoch's BatchNorm running
statistics match, so after each average they are recomputed over the train split, drawn (by the
balanced sampler's weights too), augmented and sharded as in training: under torchrun the
synchronised BatchNorm layers then see the batches one process would, and every rank ends with
the same statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

import torch

if TYPE_CHECKING:
    import numpy as np

    from facefair.data.augment_config import AugmentConfig
    from facefair.data.prepare import SplitData
    from facefair.train.distributed import Distributed

__all__ = ["WeightAverage"]


class WeightAverage:
    """The running average of ``model``'s weights from epoch ``first_epoch`` (0-based) on.

    ``average`` is called after every epoch; ``module`` is the averaged network, usable once
    ``started``.  ``autocast`` is the training's autocast context (re-entered for each pass);
    ``sample_weights`` are the balanced sampler's row weights (None: plain shuffling).
    """

    def __init__(self, model: torch.nn.Module, first_epoch: int, device: torch.device, autocast, *, seed: int,
                 distributed: "Distributed", per_rank_batch: int, sample_weights: Optional[np.ndarray] = None):
        from torch.optim.swa_utils import AveragedModel

        self.averaged = AveragedModel(model)
        self.first_epoch, self.device, self.autocast, self.seed = first_epoch, device, autocast, seed
        self.distributed, self.per_rank_batch, self.sample_weights = distributed, per_rank_batch, sample_weights

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    @property
    def count(self) -> int:
        """How many epochs' weights are in the average."""
        return int(self.averaged.n_averaged)

    @property
    def started(self) -> bool:
        return self.count > 0

    def average(self, model: torch.nn.Module, epoch: int, train: "SplitData", augment_config: "AugmentConfig") -> bool:
        """Fold ``model``'s weights in when ``epoch`` is in the averaging phase and recompute the
        average's BatchNorm statistics over ``train``; True when it was."""
        if epoch < self.first_epoch:
            return False
        from torch.optim.swa_utils import update_bn

        self.averaged.update_parameters(model)
        with torch.no_grad(), self.autocast:
            update_bn(self._inputs(train, augment_config, epoch), self.averaged.module)
        return True

    def _inputs(self, train: "SplitData", augment_config: "AugmentConfig", epoch: int) -> Iterator[torch.Tensor]:
        from facefair.data.batches import augment
        from facefair.train.sampling import epoch_batches

        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 104_729 + 7_919 * self.distributed.rank)
        for images, positions, _ in epoch_batches(train, epoch, seed=self.seed, weights=self.sample_weights,
                                                  distributed=self.distributed, per_rank_batch=self.per_rank_batch):
            if len(positions):
                yield augment(images, self.device, generator, augment_config)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)
