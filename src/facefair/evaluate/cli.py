"""``facefair evaluate`` (registered by ``facefair.cli``): a run's best epoch on one of its splits,
or on another dataset -> OUT/report.json, OUT/predictions.csv."""

from __future__ import annotations


def _evaluate(args) -> int:
    from pathlib import Path

    from facefair.audit.compare import unique_names
    from facefair.evaluate.run import dataset_name, evaluate_run
    from facefair.inference.settings import InferenceSettings
    from facefair.run import Run

    common = dict(kind=args.kind, image_root=args.image_root, trust_checkpoint=args.trust_checkpoint,
                  detect=args.detect, framing_check=args.framing_check, settings=InferenceSettings.from_object(args))
    if not args.data:
        if args.layout or args.label_map:
            raise ValueError("--layout and --label-map describe a --data dataset; add --data PATH")
        evaluate_run(args.run, split=args.split, out_dir=args.out, **common)
        return 0
    names = unique_names([dataset_name(d) for d in args.data])
    reference = _reference(args.run) if args.transfer else None  # before minutes of inference, not after
    evaluated = {}
    for data, name in zip(args.data, names):
        if args.out is None:
            out = Run(args.run).eval_dir(name, adapt_bn=args.adapt_bn)
        else:
            out = Path(args.out) if len(args.data) == 1 else Path(args.out) / name
        print(f"== {name} ({data})", flush=True)
        evaluate_run(args.run, data=data, out_dir=str(out), layout=args.layout, label_map=args.label_map, **common)
        evaluated[name] = (data, out)
    if reference is not None:
        _transfer(args, reference, evaluated)
    return 0


def _reference(run: str):
    """The run's in-distribution predictions (its test split), which the transfer audit compares with."""

    from facefair.audit.groups import load_predictions
    from facefair.run import Run

    for candidate in (Run(run), Run(Run(run).eval_dir("test"))):
        if candidate.predictions_path.is_file():
            return load_predictions(candidate.folder)
    raise FileNotFoundError(f"{run} has no {Run(run).predictions_path.name} of its test split to compare other "
                            f"datasets with: run `facefair evaluate {run}` first (it writes "
                            f"{Run(run).eval_dir('test')}), or add --no-transfer to evaluate without the comparison")


def _transfer(args, reference, evaluated: dict) -> None:

    from facefair.audit.config import AuditConfig
    from facefair.audit.groups import load_predictions
    from facefair.audit.config import TransferConfig
    from facefair.audit.transfer import headline_lines, transfer_audit, write_transfer
    from facefair.run import Run

    inside, inside_source = reference
    config = TransferConfig(collapse_drop=args.collapse_drop, collapse_below=args.collapse_below,
                            audit=AuditConfig(n_boot=args.n_boot))
    tables = {name: load_predictions(out)[0] for name, (_, out) in evaluated.items()}
    adapted = ", --adapt-bn: BatchNorm statistics re-estimated on these faces" if args.adapt_bn else ""
    result = transfer_audit(inside, tables, config, sources={n: f"{d}{adapted}" for n, (d, _) in evaluated.items()},
                            inside_source=f"the run's test split ({inside_source})")
    folder = Run(args.out or args.run)
    out = folder.adapted_transfer_dir if args.adapt_bn else folder.transfer_dir
    write_transfer(result, out)
    for dataset in result["datasets"]:
        print("\n".join(headline_lines(dataset)), flush=True)
    print(f"transfer report: {out / 'transfer.html'} (tables: transfer_groups.csv, transfer.json)", flush=True)


def register(subparsers) -> None:
    import argparse

    from facefair.align.cli import add_detect_flags
    from facefair.audit.config import AuditConfig
    from facefair.audit.config import TransferConfig as TransferDefaults
    from facefair.flags import (add_adapt_bn_flag, add_bf16_flag, add_chip_flags, add_device_flag, add_layout_flags,
                                add_trust_flag, add_tta_flag)
    from facefair.inference.settings import DEFAULTS

    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run's best epoch on a split or another dataset",
        description="Evaluate a finished run's best epoch on one of its saved splits, or on another dataset "
                    "(--data); writes OUT/report.json and OUT/predictions.csv.")
    parser.add_argument("run", help="run folder (with its model, config.yaml, splits.csv)")
    parser.add_argument("--split", default="test", help="train, val, test, or all (with --data)")
    parser.add_argument("--data", action="append", metavar="PATH",
                        help="evaluate on another dataset instead of the run's own (repeat for several): a folder "
                             "of label folders (e.g. gender/race/x.jpg), a UTKFace folder or a label CSV; each goes "
                             "to RUN/eval-NAME")
    add_layout_flags(parser)
    parser.add_argument("--kind", default="auto", help="dataset kind for --data: auto, utkface, fairface, csv or "
                                                       "imagefolder")
    parser.add_argument("--image-root", help="image root for a CSV --data")
    parser.add_argument("--out", help="output folder (default RUN/eval-SPLIT, or RUN/eval-NAME per --data; with "
                                      "several --data, OUT/NAME)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="faces per forward pass")
    add_device_flag(parser, DEFAULTS.device)
    add_tta_flag(parser)
    add_bf16_flag(parser, DEFAULTS.bf16)
    add_adapt_bn_flag(parser)
    add_trust_flag(parser)
    parser.add_argument("--no-framing-check", dest="framing_check", action="store_false",
                        help="--data of cropped faces: skip measuring (with a face detector, on a sample) whether "
                             "they are framed like the training chips (a mismatch is a warning and report.json's "
                             "framing entry)")
    transfer = parser.add_argument_group("transfer audit (--data)")
    transfer.add_argument("--transfer", action=argparse.BooleanOptionalAction, default=True,
                          help="compare each --data dataset with the run's test split, per group, and write "
                               "RUN/transfer/transfer.html (OUT/transfer with --out)")
    transfer.add_argument("--collapse-drop", type=float, default=TransferDefaults.collapse_drop,
                          help="flag a group whose accuracy/recall drops by more than this share")
    transfer.add_argument("--collapse-below", type=float, default=TransferDefaults.collapse_below,
                          help="... or ends below this")
    transfer.add_argument("--n-boot", type=int, default=AuditConfig().n_boot, help="bootstrap resamples per side")
    photos = parser.add_argument_group("raw photos (--data with --detect)")
    add_detect_flags(photos, default=None, workers=False)
    add_chip_flags(photos, DEFAULTS, min_face=False)
    parser.set_defaults(func=_evaluate)
