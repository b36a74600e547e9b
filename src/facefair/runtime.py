"""The few run-time helpers every layer needs: which device, which autocast, atomic file writes.

This module sits below everything else in the package (it imports nothing from facefair) and
imports torch only inside the functions that need it, so the CLI can import it at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


def select_device(name: str = "auto") -> "torch.device":
    """``auto``: the first CUDA device when there is one, else the CPU; anything else as torch
    spells it (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from error


def autocast_context(device: "torch.device", amp: bool, bf16: bool):
    """fp16 autocast on CUDA when ``amp``, bf16 on the CPU when ``bf16``, otherwise full precision."""
    import torch

    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename over ``path``: a kill mid-write never leaves a truncated file, and
    readers see either the old or the new content.  The temporary file sits next to ``path`` (same
    file system, so the rename is atomic) and is removed when ``write`` fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))
