"""The plots of ``facefair describe`` (matplotlib figures; ``facefair.pages`` builds the page)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd


# --------------------------------------------------------------------------- describe's plots
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def label_bars(counts: pd.DataFrame):
    """One bar chart per attribute, bars labelled with their counts."""
    plt = _pyplot()
    attributes = list(dict.fromkeys(counts["attribute"]))
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.4), squeeze=False)
    for ax, attribute in zip(axes[0], attributes):
        part = counts[counts["attribute"] == attribute]
        bars = ax.bar(part["value"].astype(str), part["count"], color="#4c72b0")
        ax.bar_label(bars, labels=[f"{n:,}" for n in part["count"]], fontsize=7)
        ax.set_title(attribute)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.set_ylabel("images")
    fig.tight_layout()
    return fig


def joint_heatmaps(joint: pd.DataFrame, rows: str = "race", columns: str = "age_group", panels: str = "gender"):
    """race x age group heat maps, one per gender, with the count in every cell: the empty and
    thin cells are where a model has little to learn from."""
    plt = _pyplot()
    panel_values = list(dict.fromkeys(joint[panels])) if panels in joint else [None]
    row_values = list(dict.fromkeys(joint[rows]))
    col_values = list(dict.fromkeys(joint[columns]))
    peak = max(1, int(joint["count"].max()))
    cmap = plt.get_cmap("Blues")
    fig, axes = plt.subplots(1, len(panel_values), figsize=(0.75 * len(col_values) * len(panel_values) + 2,
                                                           0.55 * len(row_values) + 1.6), squeeze=False)
    for ax, panel in zip(axes[0], panel_values):
        part = joint if panel is None else joint[joint[panels] == panel]
        grid = (part.pivot_table(index=rows, columns=columns, values="count", aggfunc="sum", fill_value=0)
                .reindex(index=row_values, columns=col_values, fill_value=0))
        ax.imshow(grid.to_numpy(), cmap=cmap, vmin=0, vmax=peak, aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{value:,}", ha="center", va="center", fontsize=7, color=text_colour(cmap(value / peak)))
        ax.set_xticks(range(len(col_values)), col_values, rotation=45, fontsize=8)
        ax.set_yticks(range(len(row_values)), row_values, fontsize=8)
        ax.set_title(f"{panels} = {panel}" if panel is not None else "all", fontsize=9)
    fig.tight_layout()
    return fig


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def age_histogram(ages: pd.Series):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    values = ages.dropna()
    ax.hist(values, bins=np.arange(0, max(101, values.max() + 2) if len(values) else 101, 2), color="#55a868")
    ax.set_xlabel("age (years)")
    ax.set_ylabel("images")
    ax.set_title(f"exact ages ({len(values):,} labelled)")
    fig.tight_layout()
    return fig


def quality_histograms(stats: pd.DataFrame, group: Optional[str] = "race"):
    """Brightness, contrast and sharpness distributions, split by ``group`` when labelled."""
    plt = _pyplot()
    readable = stats[stats["error"].isna()] if "error" in stats else stats
    quantities = [("brightness", "mean grey (0-255)"), ("contrast", "grey std"),
                  ("sharpness", "Laplacian variance (log10)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    groups = sorted(readable[group].dropna().unique()) if group and group in readable else []
    for ax, (column, label) in zip(axes, quantities):
        values = readable[column].astype(float)
        if column == "sharpness":
            values = np.log10(values.clip(lower=1e-3))
        edges = np.histogram_bin_edges(values.dropna(), bins=25) if values.notna().any() else 10
        if groups:
            for g in groups:
                ax.hist(values[readable[group] == g].dropna(), bins=edges, histtype="step", label=str(g),
                        density=True)
        else:
            ax.hist(values.dropna(), bins=edges, color="#8172b2")
        ax.set_xlabel(label)
        # Per-group curves are densities (groups differ in size by 6x): the area under each is 1.
        ax.set_ylabel("density (share of the group per unit)" if groups else "images")
        ax.set_title(column)
    if groups:
        axes[-1].legend(fontsize=7, title=group, title_fontsize=7)
    fig.tight_layout()
    return fig


def size_scatter(stats: pd.DataFrame):
    plt = _pyplot()
    readable = stats[stats["error"].isna()] if "error" in stats else stats
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.scatter(readable["width"], readable["height"], s=8, alpha=0.4)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    sizes = readable.groupby(["width", "height"]).size().sort_values(ascending=False)
    top = ", ".join(f"{int(w)}x{int(h)} ({n})" for (w, h), n in sizes.head(3).items())
    ax.set_title(f"image sizes: {top}", fontsize=8)
    fig.tight_layout()
    return fig
