"""Galleries of the most confident mistakes, per demographic group.

A model that is wrong *and sure* about one group's faces is the failure a fairness audit most
needs to show a person: these are the faces, with what the model said and how sure it was.
Everything is read from the predictions CSV contract, so it works for any model's table
(ours, a baseline, the third-party model).  The HTML fragment embeds its PNG as base64 so a
report that includes it stays one self-contained file.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair.data.images import try_decode
from facefair.table import probability_columns


def most_confident_errors(predictions: pd.DataFrame, task: str, *, per_group: int = 4,
                          group_attribute: str = "race") -> pd.DataFrame:
    """The ``per_group`` wrong predictions with the highest probability for the predicted class,
    per value of ``group_attribute``.  For exact age (no probabilities) the largest absolute
    errors are taken instead.  Columns: group, path, true, pred, score (probability of the
    wrong class, or years off), rank (1 = most confident within its group)."""
    if f"{task}_true" not in predictions or f"{task}_pred" not in predictions:
        raise ValueError(f"the predictions table has no {task}_true/{task}_pred columns")
    if group_attribute not in predictions:
        raise ValueError(f"the predictions table has no {group_attribute!r} column to group by")
    frame = predictions[predictions[f"{task}_true"].notna() & predictions[f"{task}_pred"].notna()
                        & predictions[group_attribute].notna()].copy()
    probs = probability_columns(frame, task)
    if probs:
        frame = frame[frame[f"{task}_true"].astype(str) != frame[f"{task}_pred"].astype(str)]
        # The probability the model gave the class it chose: how sure it was of its mistake.
        columns = [f"{task}_prob_{p}" for p in frame[f"{task}_pred"].astype(str)]
        known = [c in frame.columns for c in columns]
        lookup = frame[probs].to_numpy(dtype=float)
        index = {c: i for i, c in enumerate(probs)}
        frame["score"] = [lookup[r, index[c]] if ok else np.nan for r, (c, ok) in enumerate(zip(columns, known))]
    else:
        frame["score"] = (frame[f"{task}_pred"].astype(float) - frame[f"{task}_true"].astype(float)).abs()
        frame = frame[frame["score"] > 0]
    frame = frame[frame["score"].notna()]
    picked = (frame.sort_values("score", ascending=False, kind="stable")
              .groupby(group_attribute, sort=True, group_keys=False).head(per_group))
    out = pd.DataFrame({"group": picked[group_attribute].astype(str), "path": picked["path"],
                        "true": picked[f"{task}_true"], "pred": picked[f"{task}_pred"], "score": picked["score"]})
    out = out.sort_values(["group", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
    out["rank"] = out.groupby("group").cumcount() + 1
    return out


def _caption(row: pd.Series, regression: bool) -> str:
    if regression:
        return f"true {float(row['true']):.0f}, said {float(row['pred']):.0f}"
    return f"true {row['true']}\nsaid {row['pred']} ({row['score']:.2f})"


def gallery_figure(errors: pd.DataFrame, task: str, *, thumb: int = 96, image_root: Optional[str | Path] = None,
                   title: Optional[str] = None):
    """A matplotlib figure: one row per group, its most confident errors left to right.
    Unreadable images show as grey tiles (the path is in the table)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(errors["group"]))
    cols = max(1, int(errors.groupby("group").size().max())) if len(errors) else 1
    rows = max(1, len(groups))
    regression = pd.api.types.is_numeric_dtype(errors["pred"]) and len(errors) > 0
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols + 0.9, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, group in enumerate(groups):
        part = errors[errors["group"] == group]
        axes[r, 0].text(-0.12, 0.5, group, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
        for c, (_, row) in enumerate(part.iterrows()):
            path = Path(row["path"])
            if image_root is not None and not path.is_absolute():
                path = Path(image_root) / path
            image, _ = try_decode(path, thumb)
            axes[r, c].imshow(image if image is not None else np.full((thumb, thumb, 3), 128, np.uint8))
            axes[r, c].set_title(_caption(row, regression), fontsize=7)
    if not groups:
        axes[0, 0].text(0.5, 0.5, "no errors", ha="center", va="center")
    fig.suptitle(title or f"{task}: worst errors per group", fontsize=9)
    fig.tight_layout()
    return fig


def confident_errors_gallery(predictions: pd.DataFrame, task: str, per_group: int = 4,
                             group_attribute: str = "race", *, thumb: int = 96,
                             image_root: Optional[str | Path] = None, png_path: Optional[str | Path] = None) -> str:
    """An HTML fragment (a heading, a base64 PNG, a table of the picked rows) of the most
    confident wrong ``task`` predictions per ``group_attribute`` group, for embedding in a
    report; ``png_path`` also saves the picture."""
    errors = most_confident_errors(predictions, task, per_group=per_group, group_attribute=group_attribute)
    regression = not probability_columns(predictions, task)
    heading = f"{task}: {'largest errors' if regression else 'most confident errors'} per {group_attribute}"
    from facefair import pages
    png = pages.figure_png(gallery_figure(errors, task, thumb=thumb, image_root=image_root, title=heading), dpi=100)
    if png_path is not None:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        Path(png_path).write_bytes(png)
    what = "years off" if regression else "probability the model gave its wrong answer"
    table = errors.assign(path=errors["path"].map(lambda p: Path(str(p)).name)).to_html(
        index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="ff-table")
    return (f'<section class="ff-gallery" data-task="{html.escape(task)}">\n'
            f"<h3>{html.escape(heading)}</h3>\n"
            f"<p>Up to {per_group} wrong predictions per group, worst first (score: {what}). "
            "Some will be label noise rather than model error: worth a look either way.</p>\n"
            f'{pages.img(pages.data_uri(png), f"{task} confident errors")}\n'
            f"<details><summary>the {len(errors)} images</summary>\n{table}</details>\n</section>")
