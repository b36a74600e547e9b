"""The few run-time helpers every layer needs: which device, which autocast, atomic file writes.

This module sits below everything else in the package (it imports nothing from facefair) and
imports torch only inside the functions that need it, so the CLI can import it at start-up.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), as oneDNN sees it.

    Without it torch emulates bfloat16, and autocast makes a MobileNetV2 step about 9x *slower*
    than fp32 (measured on an AVX2-only AMD EPYC), the opposite of what ``--bf16`` is for.
    Cached: ``autocast_context`` asks on every training and inference step."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def use_cpu_bf16(requested: bool) -> bool:
    """``--bf16`` on the CPU only where it speeds things up; says once per process when it is ignored."""
    if not requested or cpu_has_native_bf16():
        return requested
    say_bf16_ignored()
    return False


@functools.lru_cache(maxsize=1)
def say_bf16_ignored() -> None:
    """The warning, once per process.  The warnings module's own once-per-place is reset by every
    ``catch_warnings`` block (the audit's metrics open one at each evaluation), so an 11-epoch run
    printed it twice an epoch."""
    import warnings

    warnings.warn("--bf16 ignored: this CPU has no native bfloat16 (AVX512-BF16/AMX), where bf16 autocast runs "
                  "several times slower than fp32; running in fp32", RuntimeWarning, stacklevel=4)


def autocast_context(device: "torch.device", amp: bool, bf16: bool):
    """fp16 autocast on CUDA when ``amp``, bf16 on the CPU when ``bf16`` and the CPU has native
    bfloat16 (see ``use_cpu_bf16``), otherwise full precision."""
    import torch

    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and use_cpu_bf16(bf16):
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
