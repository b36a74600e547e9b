"""``facefair evaluate`` (registered by ``facefair.cli``): a run's best epoch on one of its splits,
or on another dataset -> OUT/report.json, OUT/predictions.csv."""

from __future__ import annotations


def _evaluate(args) -> int:
    from facefair.align.cli import detector_config
    from facefair.evaluate.run import evaluate_run

    evaluate_run(args.run, split=args.split, out_dir=args.out, data=args.data, kind=args.kind,
                 image_root=args.image_root, device=args.device, tta=args.tta, batch_size=args.batch_size,
                 trust_checkpoint=args.trust_checkpoint, detect=detector_config(args) if args.detect else None, padding=args.padding,
                 framing_check=args.framing_check)
    return 0


def register(subparsers) -> None:
    from facefair.align.cli import add_detect_flags
    from facefair.flags import add_device_flag, add_trust_flag, add_tta_flag

    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run's best epoch on a split or another dataset",
        description="Evaluate a finished run's best epoch on one of its saved splits, or on another dataset "
                    "(--data); writes OUT/report.json and OUT/predictions.csv.")
    parser.add_argument("run", help="run folder (with its model, config.yaml, splits.csv)")
    parser.add_argument("--split", default="test", help="train, val, test, or all (with --data)")
    parser.add_argument("--data", help="evaluate on another dataset instead of the run's own")
    parser.add_argument("--kind", default="auto", help="dataset kind for --data: auto, utkface, fairface, csv or "
                                                       "imagefolder")
    parser.add_argument("--image-root", help="image root for a CSV --data")
    parser.add_argument("--out", help="output folder (default RUN/eval-SPLIT)")
    parser.add_argument("--batch-size", type=int, default=128, help="faces per forward pass")
    add_device_flag(parser)
    add_tta_flag(parser)
    add_trust_flag(parser)
    parser.add_argument("--no-framing-check", dest="framing_check", action="store_false",
                        help="--data of cropped faces: skip measuring (with a face detector, on a sample) whether "
                             "they are framed like the training chips (a mismatch is a warning and report.json's "
                             "framing entry)")
    photos = parser.add_argument_group("raw photos (--data with --detect)")
    add_detect_flags(photos, default=None, workers=False)
    photos.add_argument("--padding", type=float, default=None,
                        help="chip padding (default: the one measured on the model's training chips, else "
                             "FairFace's 0.25)")
    parser.set_defaults(func=_evaluate)
