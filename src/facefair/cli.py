"""``facefair`` command line: train, evaluate, predict, cache, audit."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from facefair.config import add_config_flags, config_from_args
from facefair.flags import output_folder_problem, show_defaults


def _train(args) -> int:
    config = config_from_args(args)  # a typo in the config fails here, before torch is loaded
    from facefair.train.loop import train
    train(config)
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
    "facefair.evaluate.cli",
    "facefair.predict",
    "facefair.audit.cli",
    "facefair.audit.card",
    "facefair.align.cli",
    "facefair.quality.cli",
    "facefair.baselines.cli",
    "facefair.explain.cli",
    "facefair.describe.cli",
    "facefair.serve.cli",
    "facefair.export.cli",
    "facefair.mitigate.cli",
    "facefair.robustness.cli",
    "facefair.train.face_heads",
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
    show_defaults(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    problem = output_folder_problem(args)
    if problem:
        print(f"facefair {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except (FileNotFoundError, ValueError) as error:
        print(f"facefair {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
        # A path that is a file where a folder is needed, or the reverse, met past the --out check.
        where = f" ({error.filename})" if error.filename else ""
        kind = "a file where a folder is needed" if not isinstance(error, IsADirectoryError) else \
            "a folder where a file is needed"
        print(f"facefair {args.command}: error: {error.strerror or error}{where}: {kind}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
