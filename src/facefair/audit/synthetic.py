"""Synthetic predictions tables with a known truth about fairness, for checking the audit itself.

``null_table``: every group has the same error process (the same chance of a correct label, the
same spread of the age error, the same confidences), and the sensitive attributes are
independent of each other, so every gap the audit could report is zero in the population and
any "significant" gap is a false claim.  ``planted`` lowers one task's accuracy in one race by a
known amount, so a correct audit must find exactly that gap (and what follows from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from facefair import labels as L

#: UTKFace's races and their shares in its 20k faces (the project's real data).
RACES = L.RACE_SCHEMES["race5"]
RACE_SHARES = (0.42, 0.19, 0.145, 0.17, 0.075)
AGE_GROUPS = L.AGE_GROUPS
AGE_SHARES = (0.02, 0.12, 0.10, 0.30, 0.22, 0.12, 0.07, 0.04, 0.01)
ACCURACY = {"gender": 0.93, "race": 0.72, "age_group": 0.60}
AGE_ERROR_SD = 6.0


@dataclass(frozen=True)
class Planted:
    """A true accuracy gap: ``task``'s accuracy is ``drop`` lower for faces of race ``race``."""
    task: str = "gender"
    race: str = "Black"
    drop: float = 0.01


def _age_bounds(group: str) -> tuple[float, float]:
    if group.endswith("+"):
        low = float(group[:-1])
        return low, low + 15
    low, high = group.split("-")
    return float(low), float(high) + 1


def _predictions(rng: np.random.Generator, truth: np.ndarray, classes: tuple[str, ...], accuracy: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices and probabilities: right with probability ``accuracy`` (per row),
    else a uniformly chosen wrong class; the confidence depends only on being right or wrong."""
    n, k = len(truth), len(classes)
    correct = rng.random(n) < accuracy
    wrong = (truth + rng.integers(1, k, n)) % k
    pred = np.where(correct, truth, wrong)
    top = 1 / k + (1 - 1 / k) * np.where(correct, rng.beta(5, 1.5, n), rng.beta(2, 2, n))
    proba = np.repeat(((1 - top) / (k - 1))[:, None], k, axis=1).astype(np.float32)
    proba[np.arange(n), pred] = top
    return pred, proba


def null_table(n: int, seed: int = 0, planted: Optional[Planted] = None, probabilities: bool = True
               ) -> pd.DataFrame:
    """A predictions table shaped as ``facefair evaluate`` writes it (gender, race, age_group, age)."""
    rng = np.random.default_rng(seed)
    race = rng.choice(len(RACES), n, p=np.array(RACE_SHARES) / sum(RACE_SHARES))
    gender = rng.integers(0, 2, n)
    age_group = rng.choice(len(AGE_GROUPS), n, p=np.array(AGE_SHARES) / sum(AGE_SHARES))
    truths = {"gender": (gender, L.GENDERS), "race": (race, RACES), "age_group": (age_group, AGE_GROUPS)}
    columns: dict[str, object] = {
        "race": np.array(RACES, dtype=object)[race], "gender": np.array(L.GENDERS, dtype=object)[gender],
        "age_group": np.array(AGE_GROUPS, dtype=object)[age_group]}
    for task, (truth, classes) in truths.items():
        accuracy = np.full(n, ACCURACY[task])
        if planted is not None and planted.task == task:
            accuracy[race == RACES.index(planted.race)] -= planted.drop
        pred, proba = _predictions(rng, truth, tuple(classes), accuracy)
        columns[f"{task}_true"] = columns[task] if task in columns else np.array(classes, dtype=object)[truth]
        columns[f"{task}_pred"] = np.array(classes, dtype=object)[pred]
        if probabilities:
            for i, cls in enumerate(classes):
                columns[f"{task}_prob_{cls}"] = proba[:, i]
    bounds = np.array([_age_bounds(g) for g in AGE_GROUPS])
    age = bounds[age_group, 0] + rng.random(n) * (bounds[age_group, 1] - bounds[age_group, 0])
    columns["age_true"] = np.floor(age)
    # not clipped at 0: a clip would give babies smaller errors, a real difference between groups
    columns["age_pred"] = np.round(age + rng.normal(0, AGE_ERROR_SD, n), 1)
    return pd.DataFrame(columns)


def write_csv(frame: pd.DataFrame, path) -> None:
    """Write fast (pyarrow's multi-threaded writer when installed) with 4-decimal probabilities."""
    frame = frame.copy()
    for column in frame.columns:
        if "_prob_" in column:
            frame[column] = frame[column].astype(np.float64).round(4)
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), str(path))
    except ImportError:
        frame.to_csv(path, index=False)


__all__ = ["Planted", "null_table", "write_csv", "RACES"]
