"""The one set of inference defaults: every path that predicts (``facefair predict``, ``evaluate``,
``serve``, ``robustness`` and the Python API) takes its defaults from :data:`DEFAULTS`, so the same
photo gets the same answer whichever way it arrives.

No torch here: command-line parsers read these defaults at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from facefair.flags import TTA_DEFAULT


@dataclass(frozen=True)
class InferenceSettings:
    """How a model is run over faces and photos.

    Parameters
    ----------
    device : str
        ``auto`` (the first CUDA device if there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``.
    batch_size : int
        Faces per forward pass (changes speed, not the answers).
    tta : bool
        Average each face with its mirror image.
    bf16 : bool or None
        bfloat16 autocast on the CPU.  ``None`` (the default): the precision the model was trained
        in, as its run's ``train.bf16`` records it, where the CPU computes bfloat16 natively
        (AVX512-BF16/AMX); fp32 for a model with no training record (an export) or on other CPUs.
        The paired check in docs/evaluate.md is why: on a real test split fp32 and bf16 give
        different labels beyond noise, and the training report is computed in the training's
        precision.  CUDA always runs fp16 autocast.
    max_side : int
        Raw photos are shrunk so their longer side is at most this before faces are detected and
        cut (FairFace's recipe: 800); 0 never shrinks.  The same meaning in every command.
    chip_size : int
        Side of the aligned chip cut around each detected face, before it is resized to the
        model's input like any image file (FairFace released 224 px chips).
    padding : float or None
        Chip padding; ``None``: the padding measured on the model's training chips, else 0.25.
    min_face : int
        Faces whose box is smaller than this (original pixels) are skipped.
    upsample, threshold, model_dir
        Detector knobs (see :class:`facefair.align.detectors.DetectorConfig`).
    adapt_bn : bool
        Re-estimate the network's BatchNorm statistics over the faces being predicted before
        predicting them (test-time adaptation, :mod:`facefair.inference.adapt`): for a set of at
        least 64 faces from one source (cropped faces, or every face found in raw photos), whose
        answers then depend on that set.  Off by default; not offered by ``serve`` (one upload at
        a time).
    """

    device: str = "auto"
    batch_size: int = 64
    tta: bool = TTA_DEFAULT
    bf16: Optional[bool] = None
    max_side: int = 800
    chip_size: int = 224
    padding: Optional[float] = None
    min_face: int = 0
    upsample: int = 1
    threshold: Optional[float] = None
    model_dir: Optional[str] = None
    adapt_bn: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_side < 0:
            raise ValueError(f"max_side must be >= 0 (0: never shrink), got {self.max_side}")
        if self.chip_size < 16:
            raise ValueError(f"chip_size must be at least 16 px, got {self.chip_size}")
        if self.padding is not None and self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.min_face < 0:
            raise ValueError(f"min_face must be >= 0, got {self.min_face}")

    def with_options(self, **options: Any) -> "InferenceSettings":
        """A copy with ``options`` changed; an unknown name is an error that lists the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown inference setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **options)

    @classmethod
    def from_object(cls, source: Any) -> "InferenceSettings":
        """The settings an object (a command's config or parsed arguments) carries, defaults for the rest."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(cls) if hasattr(source, f.name)})


#: The defaults every command and the Python API start from.
DEFAULTS = InferenceSettings()


def resolve_bf16(bf16: Optional[bool], model: Any = None) -> bool:
    """``None`` -> the precision ``model`` was trained in (``model.trained_bf16``, set when it was
    loaded from a run folder; fp32 when unknown), where this CPU computes bfloat16 natively.  A
    given value is kept (a requested bf16 on a CPU without it is refused, with a warning, by
    :func:`facefair.runtime.use_cpu_bf16`)."""
    if bf16 is not None:
        return bf16
    if not getattr(model, "trained_bf16", False):
        return False
    from facefair.runtime import cpu_has_native_bf16
    return cpu_has_native_bf16()
