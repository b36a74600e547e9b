"""Data-quality benchmark on the real UTKFace folder: what `facefair clean --labels --duplicates`
finds, per task and per group, and how many duplicate clusters cross the recipe's saved split.

    .venv/bin/python benchmarks/data_quality.py            # all 20,153 faces (~40 min on 2 busy cores)
    .venv/bin/python benchmarks/data_quality.py --limit 2000 --out runs/quality-smoke   # smoke

Writes the full outputs (label_issues.csv, label_scores.csv, label_rates.csv, duplicates.csv,
duplicate_pairs.csv, duplicates_crossing.csv, clean.html) to --out, and the figures to
benchmarks/results/data_quality.json and .md.  It also recomputes the issue's quick look
(32 px grayscale, mean-removed cosine >= 0.97) so our pHash clusters can be compared with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def gray_pairs(images: np.ndarray, index: np.ndarray, threshold: float = 0.97) -> set[tuple[int, int]]:
    """The issue's quick look: 32 px grayscale, mean removed, cosine >= threshold."""
    from PIL import Image

    gray = np.stack([np.asarray(Image.fromarray(np.asarray(images[k])).convert("L").resize((32, 32), Image.BILINEAR),
                                np.float32).ravel() for k in index])
    gray -= gray.mean(axis=1, keepdims=True)
    gray /= np.maximum(np.linalg.norm(gray, axis=1, keepdims=True), 1e-6)
    pairs = set()
    for start in range(0, len(gray), 1024):
        similarity = gray[start:start + 1024] @ gray.T
        i, j = np.nonzero(similarity >= threshold)
        pairs |= {(int(a + start), int(b)) for a, b in zip(i, j) if a + start < b}
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "utkface" / "UTKFace"))
    parser.add_argument("--split", default=str(ROOT / "runs" / "bench-split" / "splits.csv"),
                        help="the recipe's seed-0 split (written by the mitigation benchmark)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "quality-utkface"))
    parser.add_argument("--limit", type=int, help="a seeded random subset (smoke runs)")
    parser.add_argument("--results", default=str(HERE / "results" / "data_quality"))
    args = parser.parse_args(argv)

    from facefair.data.readers import LabelTable, read_dataset
    from facefair.data.splits import data_root
    from facefair.quality.features import embed
    from facefair.quality.run import QualityConfig, run_quality

    table = read_dataset(args.data)
    frame = table.frame
    if args.limit:
        frame = frame.sample(args.limit, random_state=0).sort_values("path").reset_index(drop=True)
    split = args.split if Path(args.split).exists() else None
    if split is None:
        print(f"note: {args.split} not found; duplicate clusters are not checked against a split")
    config = QualityConfig(split=split)
    started = time.perf_counter()
    result = run_quality(LabelTable(frame, table.race_scheme, table.problems), args.out, config,
                         root=data_root(args.data), progress=True)
    seconds = time.perf_counter() - started
    summary = dict(result.summary)

    # The figure, on the same decoded pixels, for comparison with the pHash pairs.
    embedded = embed(frame["path"].tolist(), config.features, progress=False)
    paths = np.asarray(frame["path"].iloc[embedded.rows], dtype=object)
    theirs = gray_pairs(embedded.images, embedded.image_index)
    position = {p: i for i, p in enumerate(paths)}
    ours = {tuple(sorted((position[a], position[b]))) for a, b in zip(result.pairs["path_a"], result.pairs["path_b"])}
    summary["issue_quick_look"] = {
        "gray32_cosine_0.97_pairs": len(theirs), "images": len({i for p in theirs for i in p}),
        "also_linked_by_facefair": len(theirs & ours), "facefair_pairs": len(ours),
        "facefair_only": len(ours - theirs)}

    rates = result.rates
    top = (rates[rates["n"] >= 50].sort_values("ratio_to_overall", ascending=False)
           .groupby("task").head(5).sort_values(["task", "ratio_to_overall"], ascending=[True, False]))
    summary["most_flagged_groups"] = top.round(4).to_dict(orient="records")
    summary["machine"] = {"platform": platform.platform(), "seconds": round(seconds, 1)}
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str))
    rates.round(4).to_csv(out.with_name(out.name + "_rates.csv"), index=False)
    out.with_suffix(".md").write_text(markdown(summary, rates))
    print(json.dumps(summary, indent=1, default=str))
    return 0


def markdown(summary: dict, rates: pd.DataFrame) -> str:
    lines = ["# Data quality on UTKFace (`benchmarks/data_quality.py`)", "",
             f"{summary['images']} images; features: {summary['features']} at {summary['feature_size']} px; "
             f"{summary['machine']['seconds']} s in all.", "", "## Labels flagged (cleanlab on out-of-fold "
             "linear-model probabilities)", "", "| task | scored | flagged | share |", "| --- | --- | --- | --- |"]
    for task, row in summary.get("labels", {}).items():
        lines.append(f"| {task} | {row['scored']} | {row['flagged']} | {row['share']:.1%} |")
    lines += ["", "## Share flagged per group (95% bootstrap CI)", ""]
    for task in ("gender", "race", "age_group", "any"):
        part = rates[(rates["task"] == task) & rates["attribute"].isin(["race", "gender", "age_group"])]
        if part.empty:
            continue
        lines += [f"**{task}**", "", "| attribute | group | n | flagged | share | vs overall |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in part.itertuples():
            lines.append(f"| {r.attribute} | {r.group} | {r.n} | {r.flagged} | {r.rate:.1%} "
                         f"[{r.ci_low:.1%}, {r.ci_high:.1%}] | {r.ratio_to_overall:.2f}x |")
        lines.append("")
    dup = summary.get("duplicates", {})
    if dup:
        lines += ["## Duplicates", "", f"- {dup['pairs']} linked pairs ({dup['pairs_by_signal']}), "
                  f"{dup['images_with_a_duplicate']} images in {dup['clusters']} clusters",
                  f"- clusters whose copies disagree: {dup['label_disagreements']}"]
        quick = summary.get("issue_quick_look", {})
        if quick:
            lines.append(f"- the issue's quick look (32 px gray, cosine >= 0.97): {quick['gray32_cosine_0.97_pairs']} "
                         f"pairs over {quick['images']} images; {quick['also_linked_by_facefair']} of them are also "
                         f"linked by facefair, which links {quick['facefair_only']} pairs more")
        if "split" in dup:
            s = dup["split"]
            lines.append(f"- against `{s['file']}`: {s['crossing_clusters']} clusters cross the split "
                         f"({s['by_splits']}); {s['test_images_with_a_train_copy']} test and "
                         f"{s['val_images_with_a_train_copy']} val images have a copy in train")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
