"""``facefair`` command line: train, evaluate, predict, cache, audit."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from facefair.config import add_config_flags, config_from_args


def _train(args) -> int:
    from facefair.train.loop import train
    train(config_from_args(args))
    return 0


def _evaluate(args) -> int:
    from facefair.evaluate.run import evaluate_run
    evaluate_run(args.run, split=args.split, out_dir=args.out, data=args.data, kind=args.kind,
                 image_root=args.image_root, device=args.device, tta=args.tta)
    return 0


def _predict(args) -> int:
    if args.detect:  # raw photos: every face is found, aligned FairFace's way, then classified
        from facefair.align.cli import run_guarded
        from facefair.align.photos import run_predict_photos

        def photos(a) -> int:
            run_predict_photos(a.checkpoint, a.input, a.out, a.detect, a.min_face, a.max_side, a.batch_size,
                               a.device, workers=a.workers, tta=a.tta, chip_size=a.chip_size, padding=a.padding,
                               chip_dir=a.save_chips, upsample=a.upsample, threshold=a.threshold,
                               model_dir=a.model_dir)
            return 0
        return run_guarded(photos)(args)
    from facefair.predict import run_predict
    run_predict(args.checkpoint, args.input, args.out, image_root=args.image_root, device=args.device,
                batch_size=args.batch_size, workers=args.workers, tta=args.tta, bf16=args.bf16,
                thresholds=args.thresholds, group_column=args.group_column)
    return 0


def _cache(args) -> int:
    from facefair.data.cache import build_cache
    from facefair.data.prepare import load_table
    config = config_from_args(args)
    table = load_table(config.data)
    cache = build_cache(table.frame["path"].tolist(), args.size, config.data.cache_dir or ".facefair-cache",
                        workers=config.data.workers or None)
    table.frame.to_csv(cache.directory / "table.csv", index=False)
    print(json.dumps({"cache": str(cache.directory), "images": len(cache.paths), "unreadable": len(cache.bad),
                      "size": cache.size}, indent=1))
    return 0


#: Commands that live in their own packages; each module has ``register(subparsers)``.
_COMMAND_MODULES = (
    "facefair.audit.cli",
    "facefair.align.cli",
    "facefair.baselines.cli",
    "facefair.explain.cli",
    "facefair.describe.cli",
    "facefair.serve.cli",
    "facefair.export.cli",
    "facefair.mitigate.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facefair", description="Train, evaluate and audit fair face-attribute models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a multi-task model and write its test report",
                           description="Train a multi-task model and write its test report. Options come from "
                                       "--config YAML and/or flags; flags win.")
    add_config_flags(train)
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a run's best.pt on a split or another dataset")
    evaluate.add_argument("run", help="run folder (with best.pt, config.yaml, splits.csv)")
    evaluate.add_argument("--split", default="test", help="train, val, test, or all (with --data)")
    evaluate.add_argument("--data", help="evaluate on another dataset instead of the run's own")
    evaluate.add_argument("--kind", default="auto", help="dataset kind for --data")
    evaluate.add_argument("--image-root", help="image root for a CSV --data")
    evaluate.add_argument("--out", help="output folder (default RUN/eval-SPLIT)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    evaluate.set_defaults(func=_evaluate)

    predict = sub.add_parser("predict", help="predict on a folder or CSV of cropped faces")
    predict.add_argument("checkpoint", help="best.pt of a run")
    predict.add_argument("input", help="folder of images, CSV with an image column, or one image")
    predict.add_argument("--out", default="predictions.csv", help="output CSV")
    predict.add_argument("--image-root", help="folder the CSV's paths are relative to")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--workers", type=int, default=None,
                         help="decode workers (default: one per core with a GPU, none on a CPU)")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False)
    predict.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                         help="bfloat16 autocast on the CPU: about 2x faster where the CPU has AVX512-BF16/AMX")
    predict.add_argument("--thresholds", help="group-specific decision thresholds (thresholds.json from "
                                              "`facefair mitigate thresholds`) applied to a binary task")
    predict.add_argument("--group-column", help="column that gives each face's group for --thresholds "
                                                "(default: the model's prediction, e.g. race_pred)")
    predict.add_argument("--min-face", type=int, default=0, help="with --detect: skip faces smaller than this (px)")
    predict.add_argument("--max-side", type=int, default=800,
                         help="with --detect: photos are shrunk to this longer side before detection")
    from facefair.align.cli import add_detect_flags, add_photo_flags
    add_detect_flags(predict, default=None, workers=False)
    add_photo_flags(predict)
    predict.set_defaults(func=_predict)

    cache = sub.add_parser("cache", help="decode and resize a dataset once into the image cache")
    add_config_flags(cache, sections=("data",))
    cache.add_argument("--size", type=int, required=True, help="image size in pixels")
    cache.set_defaults(func=_cache)

    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A command whose optional dependencies are not installed is left out, not fatal.
            if error.name and error.name.startswith("facefair"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args) or 0
    except (FileNotFoundError, ValueError) as error:
        print(f"facefair {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
