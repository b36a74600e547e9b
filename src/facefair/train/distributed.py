"""Distributed data-parallel context for ``torchrun`` (one process per GPU, or CPU processes on gloo).

Every rank computes the same split and the same epoch order (both derive from the seed), takes
its interleaved shard of that order, and uses ``batch_size / world_size`` rows per step, so the
global batch — and with it every hyper-parameter — means the same as in a single-process run.
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from facefair.runtime import select_device


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
