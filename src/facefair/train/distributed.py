"""Distributed data-parallel context for ``torchrun`` (one process per GPU, or CPU processes on gloo).

Every rank computes the same split and the same epoch order (both derive from the seed), takes
its interleaved shard of that order, and uses ``batch_size / world_size`` rows per step, so the
global batch — and with it every hyper-parameter — means the same as in a single-process run.
Only rank 0 writes files.

Two things would still make N processes train a different model than one: BatchNorm statistics of
a 1/N batch, and per-task loss means over each rank's own labelled rows.  So BatchNorm layers are
synchronised (:meth:`Distributed.sync_batchnorm`: torch's SyncBatchNorm on GPUs, the same
computation with differentiable all-reduces on CPU processes, where torch has none), and
:class:`facefair.train.losses.MultiTaskLoss` divides by global counts (:meth:`Distributed.sum_tensor`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import logging

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from facefair.runtime import select_device

log = logging.getLogger("facefair")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> "Distributed":
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        context = cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
            if use_cuda:
                torch.cuda.set_device(context.local_rank)
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return context

    def device(self, requested: str) -> torch.device:
        device = select_device(requested)
        if device.type == "cuda" and device.index is None and self.enabled:
            return torch.device("cuda", self.local_rank)  # each process its own GPU
        return device

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} does not divide over {self.world_size} processes")
        return batch_size // self.world_size

    def shard(self, order: np.ndarray, per_rank_batch: int) -> np.ndarray:
        """This rank's rows of the epoch order; every rank gets the same number of full batches
        (an uneven count would leave one rank waiting for a gradient that never comes)."""
        if not self.enabled:
            return order
        step = per_rank_batch * self.world_size
        usable = max(step, len(order) // step * step) if len(order) >= step else len(order) // self.world_size * self.world_size
        return order[:usable][self.rank::self.world_size]

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether every rank's loss is finite: ranks must agree to step or skip together."""
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        if self.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over every rank (not differentiated through)."""
        if not self.enabled:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def sync_batchnorm(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Every BatchNorm layer (timm's BatchNormAct too) normalised by the statistics of the global
        batch, as in one process; without it each rank would normalise by its 1/N share."""
        if not self.enabled or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return model
        if device.type == "cpu":
            # torch's SyncBatchNorm runs on GPUs only (and DDP refuses it on CPU modules): swap the
            # class of each layer, which keeps its parameters, buffers and state-dict keys.
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.__class__ = (_CrossRankBatchNormAct if hasattr(module, "act") or hasattr(module, "drop")
                                        else _CrossRankBatchNorm)
        else:
            from timm.layers import convert_sync_batchnorm  # BatchNorm and timm's BatchNormAct
            model = convert_sync_batchnorm(model)
        count = sum(isinstance(m, (nn.SyncBatchNorm, _CrossRankBatchNorm)) for m in model.modules())
        log.info("%d BatchNorm layers synchronised over %d processes (statistics of the global batch)",
                 count, self.world_size)
        return model

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def merge_rows(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Combine per-rank predictions (each rank filled its rows, NaN elsewhere)."""
        if not self.enabled:
            return outputs
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, outputs)
        merged = {}
        for name in gathered[0]:
            merged[name] = gathered[0][name].copy()
            for other in gathered[1:]:
                merged[name] = np.where(np.isnan(merged[name]), other[name], merged[name])
        return merged

    def gather_list(self, items: list) -> list:
        if not self.enabled:
            return items
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, items)
        return [x for part in gathered for x in part]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class _CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for CPU processes (gloo): one differentiable all-reduce of per-channel sums,
    sums of squares and counts gives the global batch's mean and variance (in float64, so the
    one-pass variance stays as exact as the two-pass one of a single process)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():  # evaluation: running statistics, nothing to sync
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        wide = x.double()
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), wide.new_full((1,), x.numel() / channels)])
        total = all_reduce(local, group=dist.group.WORLD)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = ((wide - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class _CrossRankBatchNormAct(_CrossRankBatchNorm):
    """timm's BatchNormAct2d (BatchNorm, then dropout and activation in one layer), synchronised."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if hasattr(self, "drop"):
            x = self.drop(x)
        if hasattr(self, "act"):
            x = self.act(x)
        return x
