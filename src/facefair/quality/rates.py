"""How often each group's labels are flagged, with bootstrap intervals.

Label noise that is heavier for one group looks exactly like model bias downstream, so the share
of flagged labels per race, gender, age group and race x gender is a finding in its own right.
Groups are the dataset's own (given) labels.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from facefair.data.splits import group_keys

GROUPINGS = (("race",), ("gender",), ("age_group",), ("race", "gender"))
RATE_COLUMNS = ["task", "attribute", "group", "n", "flagged", "rate", "ci_low", "ci_high", "ratio_to_overall"]


def _interval(n: int, k: int, n_boot: int, rng: np.random.Generator, level: float) -> tuple[float, float]:
    """Percentile bootstrap of a share: resampling n 0/1 rows with replacement draws the flagged
    count from Binomial(n, k/n), so the replicates need no row-level resampling."""
    if n == 0:
        return np.nan, np.nan
    draws = rng.binomial(n, k / n, size=n_boot) / n
    tail = (1 - level) / 2 * 100
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def group_rates(scored: pd.DataFrame, labels: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95, min_group: int = 1) -> pd.DataFrame:
    """Per task (and ``any``: an image with at least one flagged label) and grouping, the share
    of scored rows flagged, its interval, and its ratio to the task's overall share."""
    flags = scored.pivot_table(index="path", columns="task", values="is_label_issue", aggfunc="max")
    flags = flags.astype(float)
    flags["any"] = flags.max(axis=1)
    table = labels.drop_duplicates("path").set_index("path")
    rows = []
    for task in flags.columns:
        scored_rows = flags[task].dropna()
        joined = table.reindex(scored_rows.index)
        overall = scored_rows.mean()
        for attributes in GROUPINGS:
            if not all(a in joined for a in attributes):
                continue
            known = joined[list(attributes)].notna().all(axis=1)
            keys = group_keys(joined[known], attributes)
            for group, members in scored_rows[known].groupby(keys):
                n, k = len(members), int(members.sum())
                if n < min_group:
                    continue
                rng = np.random.default_rng([seed, zlib.crc32(f"{task}|{'x'.join(attributes)}|{group}".encode())])
                low, high = _interval(n, k, n_boot, rng, level)
                rows.append({"task": task, "attribute": " x ".join(attributes), "group": group, "n": n,
                             "flagged": k, "rate": k / n, "ci_low": low, "ci_high": high,
                             "ratio_to_overall": (k / n) / overall if overall else np.nan})
    return pd.DataFrame(rows, columns=RATE_COLUMNS)
