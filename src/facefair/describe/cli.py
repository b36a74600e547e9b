"""``facefair describe --data PATH --out DIR``: DIR/describe.html plus the tables as CSVs."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class DescribeConfig:
    data: str
    out: str
    kind: str = "auto"
    image_root: Optional[str] = None
    race_scheme: Optional[str] = None
    sample: int = 500         # images measured for size/quality statistics (0: all)
    labels_only: bool = False  # a label CSV whose images are not here (FairFace's CSVs alone)
    layout: Optional[str] = None   # label folders: the attribute of each level (default: detected)
    label_map: tuple[str, ...] = ()  # YAML files or ATTRIBUTE:RAW=LABEL
    seed: int = 0
    beta: float = 0.9999      # Cui et al. effective-number parameter


def describe_dataset(config: DescribeConfig) -> dict:
    """Write the CSVs and describe.html; returns a small summary (also written as JSON)."""
    from facefair.data.readers import read_dataset, read_label_csv, restrict_race_scheme
    from facefair import pages as P
    from facefair.describe import html as H
    from facefair.describe import stats as S

    if config.labels_only and Path(config.data).is_file():
        table = read_label_csv(config.data, config.image_root, require_images=False)
    else:
        table = read_dataset(config.data, kind=config.kind, image_root=config.image_root, layout=config.layout,
                             label_map=list(config.label_map))
    table = restrict_race_scheme(table, config.race_scheme)
    frame = table.frame
    if frame.empty:
        example = f", e.g. {table.problems[0]}" if table.problems else ""
        raise ValueError(f"no usable rows in {config.data} ({len(table.problems)} problems{example}); "
                         "for a label CSV whose images are not here, add --labels-only")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    counts = S.label_counts(frame)
    joint = S.joint_counts(frame)
    summary, per_class = S.imbalance_summary(frame, beta=config.beta)
    measure = not config.labels_only
    images = S.image_stats(frame, S.ImageStatsConfig(sample=config.sample, seed=config.seed)) if measure else None
    counts.to_csv(out / "label_counts.csv", index=False)
    joint.to_csv(out / "joint_race_gender_age_group.csv", index=False)
    summary.to_csv(out / "imbalance_summary.csv", index=False)
    per_class.to_csv(out / "imbalance_per_class.csv", index=False)

    datasets = frame["dataset"].value_counts().to_dict() if "dataset" in frame else {}
    sections = [
        P.Section("Label distributions")
        .text("Every row counted; rows without a label for an attribute are '(missing)'. Share is of all rows.")
        .figure(H.label_bars(counts), "label counts").table(counts),
    ]
    if frame["age"].notna().any():
        sections.append(P.Section("Exact ages").figure(H.age_histogram(frame["age"]), "age histogram"))
    joint_section = P.Section("Joint distribution: race x gender x age group")
    if len(joint) and joint["count"].sum() > 0:
        joint_section.text(f"{int(joint['count'].sum()):,} rows have all three labels. Empty and thin cells are "
                           "the faces a model sees least; the audit's per-group numbers there are noisy.")
        joint_section.figure(H.joint_heatmaps(joint), "joint heat maps")
        joint_section.table(S.joint_pivot(joint), index=True)
    else:
        joint_section.text("No row has all three labels.")
    sections.append(joint_section)
    sections.append(
        P.Section("Class imbalance")
        .text("max/min ratio: largest over smallest class. Effective classes: exp(label entropy), k for k equal "
              f"classes. Effective number (Cui et al. 2019, beta={config.beta}) and the class-balanced weight "
              "(inverse effective number, mean 1) per class.")
        .table(summary).table(per_class))
    if images is not None:
        sections.append(_image_section(images, out))
    if table.problems:
        problems = [str(p) for p in table.problems]
        sections.append(P.Section(f"Data problems ({len(problems):,})").raw(
            "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems[:50]) + "</ul>"
            + (f"<p class='note'>... and {len(problems) - 50} more</p>" if len(problems) > 50 else "")))
    intro = (f"{len(frame):,} images from {config.data} "
             f"({', '.join(f'{k}: {v:,}' for k, v in datasets.items())}); race scheme {table.race_scheme}"
             + (f"; label folders read as {'/'.join(table.layout)}" if table.layout else "") + ".")
    P.write_sections(out / "describe.html", f"Dataset description: {Path(config.data).name}", sections, intro)
    result = {"images": len(frame), "race_scheme": table.race_scheme, "layout": table.layout,
              "problems": len(table.problems),
              "all_three_labels": int(joint["count"].sum()) if len(joint) else 0,
              "imbalance": summary.set_index("attribute")[["max_min_ratio", "effective_classes"]].to_dict("index"),
              "html": str(out / "describe.html")}
    (out / "summary.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _image_section(images, out: Path):
    """Image statistics: CSVs written, and the page section that shows them."""
    from facefair import pages as P
    from facefair.describe import html as H
    from facefair.describe import stats as S

    summary = S.image_summary(images)
    by_race = S.quality_by_group(images, "race")
    images.to_csv(out / "image_stats_sample.csv", index=False)
    summary.to_csv(out / "image_stats_summary.csv", index=False)
    section = (P.Section(f"Images (seeded sample of {len(images):,})")
               .text("Brightness and contrast: mean and standard deviation of the grey image; sharpness: "
                     "variance of the Laplacian at 128x128 grey (low = blurry).")
               .table(summary))
    sizes = images.dropna(subset=["width", "height"]).groupby(["width", "height"]).size()
    if len(sizes) > 1:  # one size (aligned crops) needs no scatter plot: the table says it
        section.figure(H.size_scatter(images), "image sizes")
    section.figure(H.quality_histograms(images, "race"), "quality histograms")
    if by_race is not None:
        by_race.to_csv(out / "image_quality_by_race.csv", index=False)
        section.text("Median quality by race: differences here confound accuracy gaps.").table(by_race)
    return section


def _describe(args) -> int:
    result = describe_dataset(DescribeConfig(data=args.data, out=args.out, kind=args.kind, image_root=args.image_root,
                                             race_scheme=args.race_scheme, sample=args.sample, seed=args.seed,
                                             labels_only=args.labels_only, layout=args.layout,
                                             label_map=tuple(args.label_map)))
    print(json.dumps(result, indent=1, default=str), flush=True)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "describe", help="label distributions, class imbalance and image statistics of a dataset (HTML)",
        description="Describe a dataset before training: label and race x gender x age-group counts, class "
                    "imbalance, image size/brightness/contrast/sharpness on a sample. Writes OUT/describe.html "
                    "(self-contained) and CSVs.")
    parser.add_argument("--data", required=True, help="UTKFace folder, ImageFolder tree or label CSV")
    parser.add_argument("--kind", default="auto", help="auto, utkface, fairface, csv or imagefolder")
    parser.add_argument("--image-root", help="folder a CSV's image paths are relative to")
    parser.add_argument("--race-scheme", help="race7, race5 or race4 (default: the data's own)")
    parser.add_argument("--sample", type=int, default=500, help="images measured for image statistics (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels-only", action="store_true",
                        help="describe a label CSV without its images (no image statistics)")
    parser.add_argument("--out", required=True, help="output folder")
    from facefair.flags import add_layout_flags
    add_layout_flags(parser)
    parser.set_defaults(func=_describe)
