"""Checkpoints written atomically: a kill mid-write never leaves a truncated best.pt/last.pt."""

from __future__ import annotations

from pathlib import Path

import torch

from facefair.runtime import write_atomic


def save_atomic(state: dict, path: str | Path) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=False)
