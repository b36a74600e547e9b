"""``facefair clean DATA --labels --duplicates --out DIR``: run the checks asked for and write
every finding as a file (nothing in the user's data is touched).

| file | what |
| --- | --- |
| ``label_issues.csv`` | the labels cleanlab flags, most suspicious first (what ``train --exclude`` reads) |
| ``label_scores.csv`` | every scored label with its quality score and rank (``is_label_issue`` marks the flags) |
| ``label_rates.csv`` | share of flagged labels per race, gender, age group, race x gender, with bootstrap CIs |
| ``duplicates.csv`` | one row per image with a duplicate: cluster id, cluster size, labels (``train --split-groups``) |
| ``duplicate_pairs.csv`` | the linked pairs and what linked them |
| ``duplicates_crossing.csv`` | with ``--split``: clusters whose images sit in more than one split |
| ``summary.json``, ``clean.html`` | the counts; the page with galleries and the per-group plot |
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from facefair.data.readers import LabelTable
from facefair.data.splits import path_keys
from facefair.quality.duplicates import DuplicateConfig
from facefair.quality.features import FeatureConfig

if TYPE_CHECKING:
    from facefair.quality.finetune import FinetuneConfig
from facefair.quality.labels import LabelCheckConfig


@dataclass(frozen=True)
class QualityConfig:
    labels: bool = True
    duplicates: bool = True
    split: Optional[str] = None           # splits.csv whose crossing clusters are reported
    features: FeatureConfig = field(default_factory=FeatureConfig)
    #: features the label scorer uses when not ``features`` (e.g. dlib's face descriptors, which
    #: match the same *person* rather than the same image, so duplicates keep ``features``)
    label_features: Optional[FeatureConfig] = None
    #: the fine-tune scorer instead of the linear one: k facefair trainings (quality/finetune.py)
    finetune: Optional["FinetuneConfig"] = None
    label_check: LabelCheckConfig = field(default_factory=LabelCheckConfig)
    duplicate: DuplicateConfig = field(default_factory=DuplicateConfig)
    n_boot: int = 1000
    html: bool = True
    gallery: int = 24                     # flagged faces shown per task on the page
    min_group_size: int = 30              # groups ranked on the page need this many scored labels (as the audit)


@dataclass
class QualityResult:
    scored: Optional[pd.DataFrame] = None      # every scored label
    rates: Optional[pd.DataFrame] = None
    pairs: Optional[pd.DataFrame] = None
    clusters: Optional[pd.DataFrame] = None
    crossing: Optional[pd.DataFrame] = None
    summary: dict = field(default_factory=dict)


def _relative(frame: pd.DataFrame, root: Optional[Path], columns) -> pd.DataFrame:
    """Paths in the written files are relative to the data root, so they still match once the
    data or the output folder moves (readers of these files accept both forms)."""
    if root is None:
        return frame
    frame = frame.copy()
    for column in columns:
        frame[column] = path_keys(frame[column], root)
    return frame


def run_quality(table: LabelTable, out_dir: str | Path, config: QualityConfig = QualityConfig(), *,
                root: Optional[Path] = None, progress: bool = True) -> QualityResult:
    from facefair.quality.features import embed  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = table.frame.reset_index(drop=True)
    started = time.perf_counter()
    embedded = embed(frame["path"].tolist(), config.features, progress=progress)
    readable = frame.iloc[embedded.rows].reset_index(drop=True)
    result = QualityResult()
    summary: dict = {"images": len(frame), "unreadable": len(embedded.bad), "features": embedded.source,
                     "feature_size": embedded.size, "embed_seconds": round(time.perf_counter() - started, 1)}
    if config.labels:
        from facefair.quality.labels import check_labels  # noqa: PLC0415
        from facefair.quality.rates import group_rates  # noqa: PLC0415

        t0 = time.perf_counter()
        label_features, probabilities = embedded.features, None
        if config.finetune is not None:
            from facefair.quality.finetune import out_of_fold_finetune  # noqa: PLC0415
            tasks = [task for task in config.label_check.tasks if task in readable and readable[task].notna().any()]
            probabilities = out_of_fold_finetune(readable, tasks, out / "finetune", config.finetune,
                                                 progress=progress)
            summary["label_scorer"] = (f"out-of-fold fine-tune: {config.finetune.folds} x {config.finetune.backbone} "
                                       f"{config.finetune.image_size} px, {config.finetune.epochs} epochs")
        elif config.label_features is not None and config.label_features != config.features:
            for_labels = embed(readable["path"].tolist(), config.label_features, progress=progress)
            if len(for_labels.rows) != len(readable):  # decoded once already, so this cannot differ
                raise RuntimeError("the label features cover other images than the first embedding")
            label_features = for_labels.features
            summary["label_features"] = for_labels.source
        scored = check_labels(readable, label_features, config.label_check, progress=progress,
                              probabilities=probabilities)
        result.scored = scored
        result.rates = group_rates(scored, readable, n_boot=config.n_boot, seed=config.label_check.seed)
        columns = ["path"]
        _relative(scored[scored["is_label_issue"]], root, columns).to_csv(out / "label_issues.csv", index=False)
        _relative(scored, root, columns).to_csv(out / "label_scores.csv", index=False)
        result.rates.to_csv(out / "label_rates.csv", index=False)
        summary["labels"] = {
            task: {"scored": int(len(part)), "flagged": int(part["is_label_issue"].sum()),
                   "share": round(float(part["is_label_issue"].mean()), 4)}
            for task, part in scored.groupby("task")}
        summary["label_check"] = asdict(config.label_check) | {"seconds": round(time.perf_counter() - t0, 1)}
    if config.duplicates:
        from facefair.quality.duplicates import (cluster_pairs, crossing_clusters,  # noqa: PLC0415
                                                 disagreements, find_pairs)

        t0 = time.perf_counter()
        pairs = find_pairs(readable["path"].tolist(), embedded.images, embedded.image_index, embedded.features,
                           config.duplicate)
        clusters = cluster_pairs(pairs, readable)
        result.pairs, result.clusters = pairs, clusters
        dup_summary = {"pairs": len(pairs), "pairs_by_signal": pairs["signal"].value_counts().to_dict(),
                       "images_with_a_duplicate": len(clusters),
                       "clusters": int(clusters["cluster"].nunique()) if len(clusters) else 0,
                       "label_disagreements": disagreements(clusters), "config": asdict(config.duplicate),
                       "seconds": round(time.perf_counter() - t0, 1)}
        if config.split:
            from facefair.data.splits import read_saved_splits  # noqa: PLC0415

            splits = read_saved_splits(config.split, readable["path"], root)
            clusters = clusters.merge(splits, on="path", how="left")
            result.clusters = clusters
            result.crossing = crossing_clusters(clusters, splits)
            result.crossing.to_csv(out / "duplicates_crossing.csv", index=False)
            crossing_rows = clusters["cluster"].isin(result.crossing["cluster"])
            dup_summary["split"] = {
                "file": str(config.split), "crossing_clusters": len(result.crossing),
                "images_in_crossing_clusters": int(crossing_rows.sum()),
                "by_splits": result.crossing["splits"].value_counts().to_dict(),
                "test_images_with_a_train_copy": int(_with_train_copy(clusters, "test")),
                "val_images_with_a_train_copy": int(_with_train_copy(clusters, "val")),
            }
        _relative(clusters, root, ["path"]).to_csv(out / "duplicates.csv", index=False)
        _relative(pairs, root, ["path_a", "path_b"]).to_csv(out / "duplicate_pairs.csv", index=False)
        summary["duplicates"] = dup_summary
    if embedded.bad:
        pd.DataFrame({"path": list(embedded.bad), "error": list(embedded.bad.values())}).to_csv(
            out / "unreadable.csv", index=False)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    result.summary = summary
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain))
    if config.html:
        from facefair.quality.report_html import write_page  # noqa: PLC0415

        write_page(out / "clean.html", result, readable, embedded, config)
    return result


def _with_train_copy(clusters: pd.DataFrame, split: str) -> int:
    has_train = clusters.groupby("cluster")["split"].transform(lambda s: (s == "train").any())
    return int(((clusters["split"] == split) & has_train).sum())


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)
