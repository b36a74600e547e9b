"""Training-state checkpoints (``last.pt``): written atomically, read without unpickling code.

``last.pt`` holds what ``--resume`` needs (weights, optimizer, scheduler, scaler, history, the
run's config and every RNG).  All of it is tensors, numbers, strings and plain containers, so
``torch.load(weights_only=True)`` reads it; the numpy RNG state, a tuple around an ndarray, is
stored as a tensor.  The best epoch's model lives beside it as ``config.json`` +
``model.safetensors`` (:mod:`facefair.models.serialization`).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from facefair.models.serialization import CheckpointError, torch_load
from facefair.runtime import write_atomic


def save_atomic(state: dict, path: str | Path) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: torch.device, *, trust: bool = False) -> dict:
    """A training state; an older ``last.pt`` whose numpy RNG state is pickled is refused with a
    message naming ``--trust-checkpoint`` unless ``trust``."""
    state = torch_load(path, device, trust=trust)
    if not isinstance(state, dict) or "model_state" not in state:
        raise CheckpointError(f"{path}: not a facefair training state (no model_state)")
    return state


def rng_state() -> dict:
    """Every generator the run draws from: torch (CPU and each CUDA device), numpy, Python."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`; also reads the keys older ``last.pt`` files used."""
    if "rng" not in state:  # before safetensors: numpy's own tuple (only loads with --trust-checkpoint)
        torch.set_rng_state(state["torch_rng"].cpu())
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        return
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
