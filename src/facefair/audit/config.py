"""What an audit is asked to do (``AuditConfig``) and what it finds (``AuditResult``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import pandas as pd

from facefair.labels import ATTRIBUTES  # the true demographic attributes a table may carry

#: Columns of the tidy tables, in the order they are written.
GROUP_COLUMNS = ["task", "attribute", "group", "metric", "value", "ci_low", "ci_high", "n", "flagged", "class",
                 "support", "thin_cell", "mdd"]
GAP_COLUMNS = ["task", "attribute", "metric", "class", "value", "ci_low", "ci_high", "verdict", "p_value", "p_holm",
               "test", "mdd", "difference_ci_low", "difference_ci_high", "n_groups", "worst_group", "best_group",
               "excluded_groups", "excluded_cells", "complete", "note"]
CALIBRATION_COLUMNS = ["task", "attribute", "group", "bin", "bin_low", "bin_high", "n", "mean_confidence",
                       "accuracy", "flagged"]
CONFUSION_COLUMNS = ["task", "attribute", "group", "true", "pred", "count"]

OVERALL = "overall"  # attribute name of the rows that describe the whole table
ALL = "all"  # group name of those rows


@dataclass
class AuditConfig:
    """Everything an audit depends on; two audits with equal configs on equal tables agree exactly."""

    attributes: tuple[str, ...] = ATTRIBUTES
    #: Each intersection is a tuple of attribute names, written ``race:gender`` on the command line.
    intersections: tuple[tuple[str, ...], ...] = (("race", "gender"),)
    #: None audits every task the table has predictions for.
    tasks: Optional[tuple[str, ...]] = None
    n_boot: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    #: Groups with fewer labelled rows are shown but marked "too small to judge" and kept out of gaps.
    min_group_size: int = 30
    n_bins: int = 10
    #: Family-wise error rate of the verdicts: Holm over every gap the audit tests.
    alpha: float = 0.05
    #: The smallest gap that matters (share of rows, 0.05 = 5 points; exact age: ``meaningful_gap_years``):
    #: groups whose detectable difference is larger are named as too small to judge it.
    meaningful_gap: float = 0.05
    meaningful_gap_years: float = 1.0
    #: The class treated as "positive" for binary tasks; Female makes gender FPR = males predicted female.
    positive_classes: dict[str, str] = field(default_factory=lambda: {"gender": "Female"})
    #: Rows repeating an earlier row's image (same ``path``) are counted once unless this is True;
    #: either way the notes say how many there were.
    keep_duplicates: bool = False

    def __post_init__(self) -> None:
        self.attributes = tuple(self.attributes)
        self.intersections = tuple(tuple(parts) for parts in self.intersections)
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must be between 0 and 1, got {self.ci_level}")
        if self.min_group_size < 1:
            raise ValueError(f"min_group_size must be >= 1, got {self.min_group_size}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.meaningful_gap <= 0 or self.meaningful_gap_years <= 0:
            raise ValueError("meaningful_gap and meaningful_gap_years must be > 0")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        for parts in self.intersections:
            if len(parts) < 2:
                raise ValueError(f"an intersection needs two or more attributes, got {parts!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["intersections"] = [":".join(parts) for parts in self.intersections]
        data["attributes"] = list(self.attributes)
        data["tasks"] = None if self.tasks is None else list(self.tasks)
        return data


@dataclass
class TaskInfo:
    name: str
    kind: str  # "classification" or "regression"
    classes: tuple[str, ...]
    n: int  # rows with both a true label and a prediction
    has_probabilities: bool
    positive_class: Optional[str] = None  # binary tasks only

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "classes": list(self.classes), "n": self.n,
                "has_probabilities": self.has_probabilities, "positive_class": self.positive_class}


@dataclass
class AuditResult:
    """Tidy tables plus the context needed to read them.

    ``group_metrics``: one row per (task, attribute, group, metric[, class]) with its bootstrap CI,
    the group's labelled size ``n``, ``flagged`` (group too small to judge), ``support`` (rows the
    value rests on: the group's negatives for an FPR, its positives for an FNR, else ``n``) and
    ``thin_cell`` (support too small: shown, kept out of the gaps).  ``gaps``: the summary gaps per
    (task, attribute); ``excluded_cells`` names the thin cells a gap lost, ``complete`` is False then.
    ``calibration``: reliability-curve bins.  ``confusion``: counts.
    """

    config: AuditConfig
    source: str
    n_rows: int
    tasks: list[TaskInfo]
    attributes: list[str]
    group_metrics: pd.DataFrame
    gaps: pd.DataFrame
    calibration: pd.DataFrame
    confusion: pd.DataFrame
    notes: list[str]
    definitions: dict[str, str]
    summary: str = ""
    #: How many tests the Holm correction ran over (every gap with a test of its own).
    family_size: int = 0

    def task(self, name: str) -> TaskInfo:
        for info in self.tasks:
            if info.name == name:
                return info
        raise KeyError(name)

    def metric(self, task: str, attribute: str, group: str, metric: str, cls: Optional[str] = None) -> pd.Series:
        """The one row for a metric of a group (``cls`` for per-class one-vs-rest metrics)."""
        gm = self.group_metrics
        rows = gm[(gm.task == task) & (gm.attribute == attribute) & (gm.group == group) & (gm.metric == metric)]
        rows = rows[rows["class"].isna()] if cls is None else rows[rows["class"] == cls]
        if len(rows) != 1:
            raise KeyError((task, attribute, group, metric, cls))
        return rows.iloc[0]

    def gap(self, task: str, attribute: str, metric: str, cls: Optional[str] = None) -> pd.Series:
        gp = self.gaps
        rows = gp[(gp.task == task) & (gp.attribute == attribute) & (gp.metric == metric)]
        rows = rows[rows["class"].isna()] if cls is None else rows[rows["class"] == cls]
        if len(rows) != 1:
            raise KeyError((task, attribute, metric, cls))
        return rows.iloc[0]


@dataclass
class TransferConfig:
    """When a group counts as collapsed, and the audit settings (intervals, smallest judged group)."""

    collapse_drop: float = 0.15    # accuracy/recall points lost outside (0.15 = 15 points)
    collapse_below: float = 0.5    # ... or ending below this outside
    collapse_mae: float = 3.0      # MAE years gained outside
    audit: AuditConfig = field(default_factory=AuditConfig)

    def __post_init__(self) -> None:
        if not 0 < self.collapse_drop < 1 or not 0 < self.collapse_below < 1:
            raise ValueError(f"--collapse-drop and --collapse-below are shares in (0, 1), got {self.collapse_drop} "
                             f"and {self.collapse_below}")
