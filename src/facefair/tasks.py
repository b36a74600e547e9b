"""The prediction tasks a model can have, and how their labels are encoded as targets.

Classification targets are class indices with -1 for "unlabelled"; exact age is years with NaN.
Those sentinels are what masks a row out of a task's loss, so merged datasets can train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair import labels as L

IGNORE_INDEX = -1


@dataclass(frozen=True)
class TaskSpec:
    name: str
    column: str
    kind: str  # "classification" or "regression"
    classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode(self, values: pd.Series) -> np.ndarray:
        if self.kind == "regression":
            return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float32)
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup.get(v, IGNORE_INDEX) if isinstance(v, str) else IGNORE_INDEX for v in values],
                        dtype=np.int64)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return ~np.isnan(encoded) if self.kind == "regression" else encoded != IGNORE_INDEX

    def to_dict(self) -> dict:
        return {"name": self.name, "column": self.column, "kind": self.kind, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskSpec":
        return cls(data["name"], data["column"], data["kind"], tuple(data.get("classes", ())))


#: More classes than this in a model file is corruption, not a face attribute (each costs a head row).
MAX_CLASSES = 1000


def check_task(task: TaskSpec) -> None:
    """A task read from a model file is one this package can build and predict with."""
    if task.kind not in ("classification", "regression"):
        raise ValueError(f"task {task.name!r}: kind must be classification or regression, got {task.kind!r}")
    if task.kind == "classification" and not 2 <= len(task.classes) <= MAX_CLASSES:
        raise ValueError(f"task {task.name!r}: a classification task needs 2 to {MAX_CLASSES} classes, "
                         f"got {len(task.classes)}")
    if len(set(task.classes)) != len(task.classes):
        raise ValueError(f"task {task.name!r}: classes repeat ({', '.join(map(str, task.classes))})")


def make_tasks(names: Sequence[str], race_scheme: Optional[str]) -> list[TaskSpec]:
    specs = []
    for name in names:
        if name == "gender":
            specs.append(TaskSpec("gender", "gender", "classification", L.GENDERS))
        elif name == "race":
            if race_scheme is None:
                raise ValueError("task 'race' asked for, but the data has no race labels")
            specs.append(TaskSpec("race", "race", "classification", L.RACE_SCHEMES[race_scheme]))
        elif name == "age_group":
            specs.append(TaskSpec("age_group", "age_group", "classification", L.AGE_GROUPS))
        elif name == "age":
            specs.append(TaskSpec("age", "age", "regression"))
        else:
            raise ValueError(f"unknown task {name!r}: gender, race, age_group, age")
    return specs


def encode_targets(frame: pd.DataFrame, tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    return {t.name: t.encode(frame[t.column]) for t in tasks}


def usable_tasks(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """The requested tasks that the table labels at all (a UTK-only table has no use for none)."""
    return [n for n in names if n in frame and frame[n].notna().any()]
