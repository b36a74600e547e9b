"""``clean.html``: one self-contained page (thumbnails and the plot embedded) with the flagged
faces per task (given -> suggested), the per-group flag rates, and the duplicate clusters as
image strips."""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from facefair import pages


def _thumb(pixels: np.ndarray, side: int = 96) -> str:
    from PIL import Image  # noqa: PLC0415

    image = Image.fromarray(np.asarray(pixels)).resize((side, side), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return pages.data_uri(buffer.getvalue(), "image/jpeg")


def _rates_plot(rates: pd.DataFrame) -> str:
    """One panel per task: flag share per group with its 95% interval, the overall share dashed."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tasks = [t for t in ("gender", "race", "age_group", "any") if t in set(rates["task"])]
    shown = rates[rates["attribute"].isin(["race", "gender", "age_group", "race x gender"])]
    height = max(4.0, 0.22 * shown.groupby("task").size().max())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), height), sharey=False, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = shown[shown["task"] == task].reset_index(drop=True)
        labels = [f"{a}: {g}" if a != "race x gender" else g.replace("|", " / ") for a, g in
                  zip(part["attribute"], part["group"])]
        y = np.arange(len(part))[::-1]
        colours = part["attribute"].map({"race": "#4c72b0", "gender": "#dd8452", "age_group": "#55a868",
                                         "race x gender": "#8172b3"})
        ax.barh(y, part["rate"], color=colours, alpha=0.8)
        ax.errorbar(part["rate"], y, xerr=[part["rate"] - part["ci_low"], part["ci_high"] - part["rate"]],
                    fmt="none", ecolor="#333", lw=0.8, capsize=2)
        overall = part.loc[part["attribute"] == "gender"]
        if len(overall):
            total = (overall["flagged"].sum() / overall["n"].sum())
            ax.axvline(total, color="#333", ls="--", lw=0.8)
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_title(f"{task}: share flagged", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return pages.figure_uri(fig, dpi=90)


def _face(src: str, lines: list[str]) -> str:
    return f'<div class="face"><img src="{src}" alt="face">' + "<br>".join(lines) + "</div>"


def write_page(path: Path, result, frame: pd.DataFrame, embedded, config) -> None:
    pixels_of = dict(zip(frame["path"], embedded.image_index))
    images = embedded.images

    def thumb(p: str) -> str:
        return _thumb(images[pixels_of[p]])

    summary = result.summary
    parts = [pages.header("Data check"),
             f"<p>{summary['images']} images ({summary['unreadable']} unreadable). Features: "
             f"{html.escape(summary['features'])} at {summary['feature_size']} px.</p>"]
    if result.scored is not None:
        scored = result.scored
        rows = "".join(f"<tr><td>{t}</td><td>{len(p)}</td><td>{int(p['is_label_issue'].sum())}</td>"
                       f"<td>{p['is_label_issue'].mean():.1%}</td></tr>" for t, p in scored.groupby("task"))
        parts.append("<h2>Likely label errors</h2><p>Out-of-fold probabilities of a linear model "
                     f"({config.label_check.folds}-fold) on the features, checked by cleanlab. A flag means "
                     "the given label is implausible to a model that never saw it; look before acting.</p>"
                     f"<table><tr><th>task</th><th>scored</th><th>flagged</th><th>share</th></tr>{rows}</table>")
        if result.rates is not None and len(result.rates):
            parts.append("<h2>Flag rates per group</h2><p>Share of each group's labels flagged, 95% bootstrap "
                         "intervals; dashed: the overall share.</p>"
                         + pages.img(_rates_plot(result.rates), "share flagged per group"))
            # a group of 16 flagged 69% of the time is noise, not a finding: rank judged groups only
            judged = result.rates[(result.rates["attribute"] != "race x gender")
                                  & (result.rates["n"] >= config.min_group_size)]
            top = judged.sort_values("ratio_to_overall", ascending=False).head(8)
            rows = "".join(f"<tr><td>{r.task}</td><td>{html.escape(r.attribute)}</td><td>{html.escape(str(r.group))}"
                           f"</td><td>{r.rate:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}]</td><td>{r.ratio_to_overall:.2f}x"
                           f"</td><td>{r.n}</td></tr>" for r in top.itertuples())
            parts.append("<p>Groups flagged most often relative to their task (groups of at least "
                         f"{config.min_group_size} scored labels; smaller ones are in the chart and "
                         "label_rates.csv):</p><table><tr><th>task</th>"
                         "<th>attribute</th><th>group</th><th>flagged</th><th>vs overall</th><th>n</th></tr>"
                         f"{rows}</table>")
        for task, part in scored[scored["is_label_issue"]].groupby("task", sort=False):
            shown = part.head(config.gallery)
            faces = "".join(_face(thumb(r.path), [f"<b>{html.escape(str(r.given_label))}</b> &rarr; "
                                                  f"{html.escape(str(r.suggested_label))}",
                                                  f"p(given) {r.prob_given:.2f}",
                                                  f"<span class='muted'>{html.escape(Path(r.path).name[:18])}</span>"])
                            for r in shown.itertuples())
            parts.append(f"<h2>{task}: the {len(shown)} most suspicious of {len(part)} flagged</h2>"
                         f"<div class='grid'>{faces}</div>")
    if result.clusters is not None:
        clusters = result.clusters
        dup = summary.get("duplicates", {})
        parts.append(f"<h2>Duplicates</h2><p>{dup.get('images_with_a_duplicate', 0)} images in "
                     f"{dup.get('clusters', 0)} clusters ({dup.get('pairs', 0)} linked pairs: "
                     f"{html.escape(str(dup.get('pairs_by_signal', {})))}). Label disagreements within clusters: "
                     f"{html.escape(str(dup.get('label_disagreements', {})))}.</p>")
        if "split" in dup:
            s = dup["split"]
            parts.append(f"<p class='warn'>{s['crossing_clusters']} clusters cross the split in "
                         f"{html.escape(s['file'])} ({s['test_images_with_a_train_copy']} test images have a copy in "
                         f"train).</p>")
        label_columns = [c for c in ("age", "gender", "race") if c in clusters]

        def disagree(members: pd.DataFrame) -> bool:
            return any(members[c].nunique(dropna=True) > 1 for c in ("gender", "race") if c in members)

        groups = list(clusters.groupby("cluster", sort=True))
        # Clusters whose copies disagree on gender or race first: those are certain label errors.
        groups.sort(key=lambda item: (not disagree(item[1]), item[0]))
        strips = []
        for cluster_id, members in groups[:40]:
            faces = []
            for r in members.head(8).itertuples():
                lines = [" ".join(html.escape(str(getattr(r, c))) for c in label_columns)]
                if "split" in members:
                    lines.append(f"<span class='muted'>{html.escape(str(r.split))}</span>")
                faces.append(_face(thumb(r.path), lines))
            flag = "<br><span class='warn'>labels differ</span>" if disagree(members) else ""
            strips.append(f"<div class='strip'><div class='id'>cluster {cluster_id}<br>{len(members)} images{flag}"
                          f"</div>{''.join(faces)}</div>")
        parts.append("".join(strips))
    pages.write(path, pages.document("facefair clean", parts))
