"""``facefair align`` and ``merge`` (registered by ``facefair.cli``; ``clean`` lives in ``facefair.quality.cli``).

Nothing heavy is imported here at module level: dlib/facenet-pytorch are loaded only when a
detector is built, so these commands are always listed and a missing backend fails with the
pip command that installs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from facefair.align.detectors import BACKENDS, DetectorConfig, MissingBackend


def add_detect_flags(parser: argparse.ArgumentParser, *, default: Optional[str] = "auto",
                     workers: bool = True) -> None:
    """``--detect`` and the detector's knobs, shared by every command that finds faces.  For
    ``facefair predict --detect``: ``default=None`` (no detection unless asked) and
    ``workers=False`` (it names its own ``--detect-workers``)."""
    parser.add_argument("--detect", default=default, choices=("auto", *BACKENDS),
                        help="face detector: dlib (FairFace's CNN/MMOD detector; slow on CPU), dlib-hog (fast), "
                             "mtcnn (facenet-pytorch); auto = dlib with a CUDA build of dlib, else dlib-hog")
    parser.add_argument("--upsample", type=int, default=1, help="dlib: times the image is doubled to find small "
                                                                "faces (FairFace: 1)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="minimum detector score (default: dlib 0, mtcnn 0.9)")
    parser.add_argument("--model-dir", help="folder with dlib's .dat models (default: face-recognition-models)")
    if workers:
        parser.add_argument("--workers", type=int, default=1, help="detector processes (files are spread over them)")


def detector_config(args, device: str = "cpu") -> DetectorConfig:
    return DetectorConfig(backend=args.detect, upsample=args.upsample, threshold=args.threshold,
                          model_dir=args.model_dir, device=device)


def _align(args) -> int:
    from facefair.align.pipeline import AlignConfig, align_paths, list_photos  # noqa: PLC0415

    paths = list_photos(args.source)
    if not paths:
        raise ValueError(f"no images found in {args.source}")
    config = AlignConfig(size=args.size, padding=args.padding, max_side=args.max_side, min_face=args.min_face,
                         border=args.border)
    root = Path(args.source) if Path(args.source).is_dir() else None
    result = align_paths(paths, args.out, detector_config(args), config, workers=args.workers, root=root,
                         progress=not args.no_progress)
    print(json.dumps({**result.summary(), "manifest": str(Path(args.out) / "manifest.csv"),
                      "skipped": str(Path(args.out) / "skipped.csv")}, indent=1))
    return 0


def read_source(spec: str, *, require_images: bool = True):
    """One ``facefair merge`` source: ``PATH`` or ``PATH@IMAGE_ROOT`` (a label CSV whose images
    live elsewhere, e.g. FairFace's CSV and its image folder)."""
    from facefair.data.readers import read_dataset, read_label_csv  # noqa: PLC0415

    path, _, image_root = spec.partition("@")
    if Path(path).suffix.lower() == ".csv":
        import pandas as pd  # noqa: PLC0415

        header = set(pd.read_csv(path, nrows=0).columns.str.lower())
        dataset = "fairface" if {"file", "age", "gender", "race"} <= header else None
        return read_label_csv(path, image_root or None, dataset=dataset, require_images=require_images)
    return read_dataset(path, image_root=image_root or None)


def _merge(args) -> int:
    from facefair.data.readers import concat_tables, label_counts  # noqa: PLC0415

    tables = [read_source(spec, require_images=args.require_images) for spec in args.sources]
    merged = concat_tables(tables, race_scheme=args.race_scheme)
    out = Path(args.out) / "labels.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.frame.to_csv(out, index=False)
    frame = merged.frame
    coverage = {name: {column: int(group[column].notna().sum()) for column in ("age", "age_group", "gender", "race")}
                | {"images": len(group)} for name, group in frame.groupby("dataset")}
    print(json.dumps({"table": str(out), "images": len(frame), "race_scheme": merged.race_scheme,
                      "labelled_by_dataset": coverage, "labels": label_counts(frame),
                      "problems": len(merged.problems)}, indent=1, default=str))
    return 0


def run_guarded(function):
    """A missing optional backend is a usage error (exit 2 with the pip command), not a traceback."""
    def run(args) -> int:
        try:
            return function(args)
        except MissingBackend as error:
            raise ValueError(str(error)) from error
    return run


def register(subparsers) -> None:
    align = subparsers.add_parser(
        "align", help="detect faces in photos and write FairFace-aligned chips plus a manifest",
        description="Detect every face, find 5 landmarks and cut aligned chips as FairFace does "
                    "(dlib.get_face_chips, padding 0.25). Writes OUT/<photo>_face<i>.jpg, OUT/manifest.csv "
                    "(source, box, landmarks, score per chip) and OUT/skipped.csv (photos without a face).")
    align.add_argument("source", help="folder of photos (searched recursively) or one photo")
    align.add_argument("out", help="output folder for chips and manifest.csv")
    add_detect_flags(align)
    align.add_argument("--size", type=int, default=224, help="chip side in pixels (FairFace: 224; its predict.py 300)")
    align.add_argument("--padding", type=float, default=0.25, help="FairFace: 0.25, or 1.25 for more context")
    align.add_argument("--max-side", type=int, default=800, help="shrink photos to this longer side before "
                                                                 "detection (0: never)")
    align.add_argument("--min-face", type=int, default=0, help="skip faces smaller than this (pixels, original photo)")
    align.add_argument("--border", type=float, default=0.0, help="pad photos by this fraction before detection "
                                                                 "(use ~0.25 for tight face crops)")
    align.add_argument("--no-progress", action="store_true")
    align.set_defaults(func=run_guarded(_align))

    merge = subparsers.add_parser(
        "merge", help="combine datasets (UTKFace + FairFace + ...) into one label table",
        description="Each source is PATH or PATH@IMAGE_ROOT. Labels are mapped onto one race scheme, ages in "
                    "years give age groups, a dataset column says where each row came from, and tasks a source "
                    "lacks stay empty (masked in training).")
    merge.add_argument("sources", nargs="+", help="dataset folders or label CSVs (CSV@IMAGE_ROOT)")
    merge.add_argument("--out", default="merged", help="output folder: OUT/labels.csv (readable again with --data)")
    merge.add_argument("--race-scheme", choices=("race7", "race5", "race4"),
                       help="default: the coarsest scheme every source maps into")
    merge.add_argument("--require-images", action=argparse.BooleanOptionalAction, default=True,
                       help="skip CSV rows whose image file is missing (--no-require-images keeps them)")
    merge.set_defaults(func=run_guarded(_merge))
