"""The numbers behind ``facefair describe``.

Label tables count every row, unlabelled ones included (as "(missing)"), so a table always
adds up to the dataset.  Image statistics are measured on a seeded sample, because decoding a
100k-image dataset to learn that it is mostly 224x224 is not worth the wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from facefair import labels as L

ATTRIBUTES = L.ATTRIBUTES
MISSING = "(missing)"
#: Label orders people expect to read tables in (age groups in age order, not alphabetically).
ORDERS = {"gender": L.GENDERS, "age_group": L.AGE_GROUPS}


def _ordered_values(frame: pd.DataFrame, attribute: str) -> list[str]:
    seen = [v for v in frame[attribute].dropna().unique()]
    preferred = ORDERS.get(attribute)
    if preferred is None:
        for scheme in ("race4", "race5", "race7"):
            if set(seen) <= set(L.RACE_SCHEMES[scheme]):
                preferred = L.RACE_SCHEMES[scheme]
                break
    preferred = [v for v in (preferred or ()) if v in seen]
    return preferred + sorted(v for v in seen if v not in preferred)


def label_counts(frame: pd.DataFrame, attributes: Sequence[str] = ATTRIBUTES) -> pd.DataFrame:
    """Long table: attribute, value, count, share (of all rows); missing labels are a value."""
    rows = []
    for attribute in attributes:
        if attribute not in frame:
            continue
        counts = frame[attribute].value_counts(dropna=True)
        for value in _ordered_values(frame, attribute):
            rows.append((attribute, value, int(counts.get(value, 0))))
        missing = int(frame[attribute].isna().sum())
        if missing:
            rows.append((attribute, MISSING, missing))
    table = pd.DataFrame(rows, columns=["attribute", "value", "count"])
    table["share"] = table["count"] / max(1, len(frame))
    return table


def joint_counts(frame: pd.DataFrame, attributes: Sequence[str] = ("race", "gender", "age_group")) -> pd.DataFrame:
    """Count of every combination of the attributes (race x gender x age group), zeros
    included, over the rows that have all of them."""
    present = [a for a in attributes if a in frame]
    labelled = frame.dropna(subset=present)
    levels = [_ordered_values(labelled, a) for a in present]
    index = pd.MultiIndex.from_product(levels, names=present)
    counts = labelled.groupby(present).size().reindex(index, fill_value=0)
    table = counts.rename("count").reset_index()
    table["share"] = table["count"] / max(1, int(table["count"].sum()))
    return table


def joint_pivot(joint: pd.DataFrame, rows: str = "race", columns: Sequence[str] = ("gender", "age_group")) -> pd.DataFrame:
    """The joint table as a grid: one row per ``rows`` value, one column per combination of
    ``columns`` (gender | age group), for reading and for the heat map."""
    pivot = joint.pivot_table(index=rows, columns=list(columns), values="count", aggfunc="sum", fill_value=0,
                              sort=False)
    return pivot


def effective_number(count: float, beta: float) -> float:
    """Cui et al. (2019): (1 - beta^n) / (1 - beta), the number of samples worth having once
    near-duplicates are discounted; its inverse is the 'class-balanced' loss weight."""
    return float((1 - beta ** count) / (1 - beta)) if count > 0 else 0.0


def imbalance_summary(frame: pd.DataFrame, attributes: Sequence[str] = ATTRIBUTES, beta: float = 0.9999
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per attribute: largest and smallest class, their ratio, the effective number of classes
    (exp of the label entropy: k for k balanced classes, near 1 when one class dominates), and per
    class the Cui et al. effective number of samples and its class-balanced weight."""
    summary, per_class = [], []
    for attribute in attributes:
        if attribute not in frame or frame[attribute].notna().sum() == 0:
            continue
        counts = frame[attribute].value_counts(dropna=True)
        counts = counts.reindex(_ordered_values(frame, attribute))
        shares = counts / counts.sum()
        entropy = float(-(shares[shares > 0] * np.log(shares[shares > 0])).sum())
        effective = {value: effective_number(int(n), beta) for value, n in counts.items()}
        inverse = {value: 1 / e for value, e in effective.items() if e > 0}
        norm = len(inverse) / sum(inverse.values())  # weights averaging 1 over the classes
        summary.append({
            "attribute": attribute, "classes": int(len(counts)), "labelled": int(counts.sum()),
            "largest": counts.idxmax(), "largest_count": int(counts.max()),
            "smallest": counts.idxmin(), "smallest_count": int(counts.min()),
            "max_min_ratio": float(counts.max() / counts.min()) if counts.min() > 0 else float("inf"),
            "effective_classes": float(np.exp(entropy)), "normalised_entropy": entropy / np.log(len(counts))
            if len(counts) > 1 else 1.0})
        for value, n in counts.items():
            per_class.append({"attribute": attribute, "value": value, "count": int(n), "share": float(shares[value]),
                              "effective_number": effective[value],
                              "class_balanced_weight": inverse.get(value, float("nan")) * norm})
    return pd.DataFrame(summary), pd.DataFrame(per_class)


# --------------------------------------------------------------------------- images
@dataclass
class ImageStatsConfig:
    sample: int = 500       # images measured (seeded random sample); 0: all
    seed: int = 0
    measure_size: int = 128  # grey image side the quality numbers are measured at


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: the usual no-reference sharpness score (low =
    blurry).  Measured at a fixed size, because it grows with resolution."""
    g = gray.astype(np.float64)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def measure_image(path: str | Path, measure_size: int = 128) -> dict:
    """Native size, mode and file size, then brightness (mean grey, 0-255), contrast (grey
    standard deviation) and sharpness (Laplacian variance) on a ``measure_size`` grey copy."""
    path = Path(path)
    row: dict = {"path": str(path)}
    try:
        row["file_kb"] = path.stat().st_size / 1024
        with Image.open(path) as image:
            row.update(width=image.width, height=image.height, mode=image.mode, format=image.format)
            gray = np.asarray(image.convert("L").resize((measure_size, measure_size), Image.BILINEAR),
                              dtype=np.float32)
        row.update(brightness=float(gray.mean()), contrast=float(gray.std()), sharpness=laplacian_variance(gray),
                   error=None)
    except (OSError, SyntaxError, ValueError) as error:
        row["error"] = f"{type(error).__name__}: {error}"
    return row


def image_stats(frame: pd.DataFrame, config: ImageStatsConfig = ImageStatsConfig()) -> pd.DataFrame:
    """One row per sampled image, with its labels; unreadable ones keep an ``error``."""
    take = len(frame) if not config.sample else min(config.sample, len(frame))
    chosen = frame.sample(n=take, random_state=config.seed) if take < len(frame) else frame
    rows = [measure_image(p, config.measure_size) for p in chosen["path"]]
    stats = pd.DataFrame(rows)
    for attribute in ATTRIBUTES:
        if attribute in chosen:
            stats[attribute] = chosen[attribute].to_numpy()
    for column in ("width", "height", "brightness", "contrast", "sharpness", "file_kb"):
        if column not in stats:
            stats[column] = np.nan
    return stats


def image_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Percentiles of each measured quantity over the readable sampled images."""
    readable = stats[stats["error"].isna()] if "error" in stats else stats
    columns = ["width", "height", "file_kb", "brightness", "contrast", "sharpness"]
    table = readable[columns].describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.95]).T
    table.insert(0, "unreadable", int(len(stats) - len(readable)))
    return table.rename_axis("quantity").reset_index()


def quality_by_group(stats: pd.DataFrame, attribute: str = "race") -> Optional[pd.DataFrame]:
    """Median brightness/contrast/sharpness per group: image quality that differs by group is a
    confounder for any accuracy gap the audit will find (darker or blurrier photos)."""
    if attribute not in stats or stats[attribute].notna().sum() == 0:
        return None
    readable = stats[stats["error"].isna()] if "error" in stats else stats
    table = readable.groupby(attribute)[["brightness", "contrast", "sharpness"]].median()
    table.insert(0, "n", readable.groupby(attribute).size())
    return table.reset_index()
