"""``facefair clean``: label errors (``--labels``), duplicates (``--duplicates``) and images
without a face (``--faces``, the detector check), each written as files under ``--out``.

Nothing heavy is imported at module level, so ``facefair --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def data_root(data: str, image_root: str | None) -> Path:
    """The folder paths are written relative to: the CSV's image root, the dataset folder, or
    the CSV's own folder."""
    if image_root:
        return Path(image_root)
    source = Path(data)
    return source if source.is_dir() else source.parent


def _faces(args, table, out: Path) -> dict:
    from facefair.align.clean import CleanConfig, clean_table  # noqa: PLC0415
    from facefair.align.cli import detector_config  # noqa: PLC0415

    config = CleanConfig(action=args.action, border=args.border, max_side=args.max_side, min_face=args.min_face)
    result = clean_table(table, detector_config(args), config, workers=args.workers, progress=not args.no_progress)
    # An --out ending in .csv is the original layout (table + TABLE.no_face.csv) that scripts use.
    table_file = out if out.suffix.lower() == ".csv" else out / "faces.csv"
    no_face_file = table_file.with_suffix(".no_face.csv") if out.suffix.lower() == ".csv" else out / "no_face.csv"
    table_file.parent.mkdir(parents=True, exist_ok=True)
    result.table.frame.to_csv(table_file, index=False)
    result.checks[result.checks["face_status"] != "face"].to_csv(no_face_file, index=False)
    print(result.summary())
    return {**result.counts, "table": str(table_file), "no_face_list": str(no_face_file)}


def _clean(args) -> int:
    from facefair.data.readers import read_dataset  # noqa: PLC0415

    table = read_dataset(args.data, kind=args.kind, image_root=args.image_root, layout=args.layout,
                         label_map=args.label_map)
    out = Path(args.out)
    faces = args.faces or not (args.labels or args.duplicates)
    if (args.labels or args.duplicates) and out.suffix.lower() == ".csv":
        raise ValueError(f"--out {out}: --labels/--duplicates write several files; give a folder")
    report: dict = {}
    if faces:
        report["faces"] = _faces(args, table, out)
    if args.labels or args.duplicates:
        from facefair.quality.duplicates import DuplicateConfig  # noqa: PLC0415
        from facefair.quality.features import FeatureConfig  # noqa: PLC0415
        from facefair.quality.finetune import FinetuneConfig  # noqa: PLC0415
        from facefair.quality.labels import LABEL_TASKS, LabelCheckConfig  # noqa: PLC0415
        from facefair.quality.run import QualityConfig, run_quality  # noqa: PLC0415

        unknown = sorted(set(args.tasks) - set(LABEL_TASKS))
        if unknown:
            raise ValueError(f"--tasks {' '.join(unknown)}: checkable tasks are {', '.join(LABEL_TASKS)}")
        config = QualityConfig(
            labels=args.labels, duplicates=args.duplicates, split=args.split, n_boot=args.n_boot,
            html=args.html,
            features=FeatureConfig(weights=args.weights, model=args.model, size=args.size, cache_dir=args.cache_dir,
                                   device=args.device, mirror=args.mirror, batch_size=args.batch_size),
            label_features=(FeatureConfig(extractor=args.label_features, cache_dir=args.cache_dir)
                            if args.label_features != "imagenet" else None),
            finetune=(FinetuneConfig(folds=args.folds, weights=args.weights, image_size=args.finetune_size,
                                     epochs=args.finetune_epochs, batch_size=args.batch_size, seed=args.seed,
                                     cache_dir=args.cache_dir)
                      if args.scorer == "finetune" else None),
            label_check=LabelCheckConfig(tasks=tuple(args.tasks), folds=args.folds, c=args.c, seed=args.seed),
            duplicate=DuplicateConfig(max_distance=args.max_distance, min_cosine=args.min_cosine,
                                      confirm_cosine=args.confirm_cosine if args.confirm_cosine >= 0 else None))
        result = run_quality(table, out, config, root=data_root(args.data, args.image_root),
                             progress=not args.no_progress)
        report.update(result.summary)
        report["out"] = str(out)
    print(json.dumps(report, indent=1, default=str))
    return 0


def register(subparsers) -> None:
    from facefair.align.cli import add_detect_flags, run_guarded  # noqa: PLC0415
    from facefair.flags import add_layout_flags  # noqa: PLC0415

    clean = subparsers.add_parser(
        "clean", help="find label errors, duplicate images and images without a face (writes files, deletes nothing)",
        description="Checks a dataset and writes what it finds under --out: --labels (likely label errors per "
                    "task from out-of-fold predictions + cleanlab: label_issues.csv, label_scores.csv, "
                    "label_rates.csv), --duplicates (exact and near-duplicate images: duplicates.csv, "
                    "duplicate_pairs.csv; --split SPLITS.csv reports clusters crossing train/val/test), "
                    "--faces (images without a detectable face). clean.html shows the findings. Without "
                    "--labels/--duplicates it runs --faces, and an --out ending in .csv keeps that check's "
                    "original layout (TABLE.csv + TABLE.no_face.csv).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    clean.add_argument("data", help="dataset: UTKFace folder, label CSV (FairFace: with --image-root), ImageFolder")
    clean.add_argument("--kind", default="auto")
    clean.add_argument("--image-root", help="folder a CSV's image paths are relative to")
    add_layout_flags(clean)
    clean.add_argument("--out", default="clean", help="output folder (or TABLE.csv for the face check alone)")
    clean.set_defaults(out_file_suffix=".csv")
    checks = clean.add_argument_group("checks")
    checks.add_argument("--labels", action="store_true", help="likely label errors (gender, race, age_group)")
    checks.add_argument("--duplicates", action="store_true", help="exact and near-duplicate images")
    checks.add_argument("--faces", action="store_true", help="images in which no face is detected")
    scorer = clean.add_argument_group("label scorer (--labels) and embeddings")
    scorer.add_argument("--weights", default="local:mobilenet_v2", help="ImageNet backbone weights for features")
    scorer.add_argument("--model", help="a trained facefair checkpoint (RUN/best.pt) whose backbone gives the "
                                        "features instead; only for images it was not trained on")
    scorer.add_argument("--scorer", choices=("linear", "finetune"), default="linear",
                        help="linear: a linear model on fixed features, out of fold (minutes); finetune: a facefair "
                             "model fine-tuned on the other folds, --folds trainings (slow, stronger)")
    scorer.add_argument("--finetune-size", type=int, default=64, help="--scorer finetune: input size in pixels")
    scorer.add_argument("--finetune-epochs", type=int, default=2, help="--scorer finetune: epochs per fold")
    scorer.add_argument("--label-features", choices=("imagenet", "dlib-face"), default="imagenet",
                        help="features of the label scorer: imagenet (the backbone above, or --model) or dlib-face "
                             "(dlib's face descriptors: finds far more label errors, needs dlib, ~0.1 s/face/core; "
                             "duplicates still use the backbone)")
    scorer.add_argument("--size", type=int, default=0, help="image size the features are computed at (0: the "
                                                             "--model's own size, else 112)")
    scorer.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=False,
                        help="average features of each image and its mirror (2x the time)")
    scorer.add_argument("--tasks", nargs="+", default=["gender", "race", "age_group"])
    scorer.add_argument("--folds", type=int, default=5, help="k of the out-of-fold predictions")
    scorer.add_argument("--c", type=float, default=1e-3, help="inverse L2 strength of the linear model")
    scorer.add_argument("--seed", type=int, default=0)
    scorer.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the per-group rates")
    scorer.add_argument("--batch-size", type=int, default=128, help="images per forward pass (and per step of --scorer finetune)")
    scorer.add_argument("--cache-dir", default=".facefair-cache", help="decoded-image cache")
    scorer.add_argument("--device", default="cpu")
    dups = clean.add_argument_group("duplicates (--duplicates)")
    dups.add_argument("--max-distance", type=int, default=4, help="pHash bits (of 64) a near-duplicate may differ by")
    dups.add_argument("--min-cosine", type=float, help="also link images whose embeddings are this similar")
    dups.add_argument("--confirm-cosine", type=float, default=0.85,
                      help="a pHash match counts only if the embeddings are at least this similar (negative: off)")
    dups.add_argument("--split", help="splits.csv: report duplicate clusters that cross train/val/test")
    clean.add_argument("--html", action=argparse.BooleanOptionalAction, default=True, help="write clean.html")
    faces = clean.add_argument_group("face check (--faces)")
    faces.add_argument("--action", choices=("flag", "drop"), default="flag")
    add_detect_flags(faces)
    faces.add_argument("--border", type=float, default=0.25, help="context added around tight crops")
    faces.add_argument("--max-side", type=int, default=800)
    faces.add_argument("--min-face", type=int, default=0)
    clean.add_argument("--no-progress", action="store_true")
    clean.set_defaults(func=run_guarded(_clean))
