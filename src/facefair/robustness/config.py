"""Settings of a robustness audit (typed; unknown corruption names and bad values are errors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from facefair.inference.settings import DEFAULTS, InferenceSettings
from facefair.robustness.corruptions import DEFAULT_CORRUPTIONS, SEVERITIES, check_names
from facefair.robustness.reframe import ReframeConfig

#: The condition every other is compared with: the same faces, same decoding path, no corruption.
CLEAN = "clean"
#: Name that stands for every ``reframe-<detector>`` condition on the command line.
REFRAME = "reframe"

#: Tidy columns of robustness.csv.
COLUMNS = ["task", "corruption", "severity", "attribute", "group", "metric", "value", "ci_low", "ci_high", "n",
           "flagged"]


@dataclass
class RobustnessConfig:
    corruptions: tuple[str, ...] = DEFAULT_CORRUPTIONS + (REFRAME,)
    severities: tuple[int, ...] = SEVERITIES
    #: Evaluate a stratified sample (race x gender x age group) of this many test faces; None: all.
    limit: Optional[int] = None
    split: str = "test"
    #: Faces are decoded to this square side before being corrupted, then resized to the model's
    #: input as usual: the corrupted photos are the same whatever the model, and the ImageNet-C
    #: severities keep the meaning they have at their native 224 px.
    work_size: int = 224
    #: Tasks to audit (None: every task the model predicts).
    tasks: Optional[tuple[str, ...]] = None
    n_boot: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    min_group_size: int = 30
    # How the model runs: the defaults every command that predicts shares (facefair.inference).
    batch_size: int = DEFAULTS.batch_size
    device: str = DEFAULTS.device
    tta: bool = DEFAULTS.tta
    bf16: Optional[bool] = DEFAULTS.bf16
    #: Old pickled ``.pt`` checkpoints beyond plain tensors load only when trusted (``--trust-checkpoint``).
    trust_checkpoint: bool = False
    reframe: ReframeConfig = field(default_factory=ReframeConfig)

    def __post_init__(self) -> None:
        self.corruptions = tuple(self.corruptions)
        self.severities = tuple(int(s) for s in self.severities)
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
        check_names([c for c in self.corruptions if c != REFRAME])
        bad = [s for s in self.severities if s not in SEVERITIES]
        if bad or not self.severities:
            raise ValueError(f"severities must be among {SEVERITIES}, got {self.severities}")
        if self.limit is not None and self.limit < 10:
            raise ValueError(f"limit must be at least 10 faces, got {self.limit}")
        if self.work_size < 32:
            raise ValueError(f"work_size must be at least 32 px, got {self.work_size}")
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must be between 0 and 1, got {self.ci_level}")

    def settings(self) -> InferenceSettings:
        """The inference settings the model runs with (batch size, device, TTA, precision)."""
        return InferenceSettings.from_object(self)

    @property
    def image_corruptions(self) -> tuple[str, ...]:
        return tuple(c for c in self.corruptions if c != REFRAME)

    @property
    def reframes(self) -> bool:
        return REFRAME in self.corruptions

    def to_dict(self) -> dict:
        data = asdict(self)
        data["corruptions"] = list(self.corruptions)
        data["severities"] = list(self.severities)
        return data
