"""``facefair robustness RUN``: the robustness audit from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facefair.flags import TRUST_HELP, add_bf16_flag, add_device_flag, add_tta_flag
from facefair.robustness.config import REFRAME, RobustnessConfig
from facefair.robustness.corruptions import CORRUPTIONS
from facefair.robustness.reframe import ReframeConfig

DESCRIPTION = """Evaluate a run's test split under image corruptions at severities 1-5 (blur, noise, JPEG,
low resolution, brightness, contrast, darkness, occlusion) and re-framed (each face re-detected and
re-aligned with each detector and padding). Writes one predictions CSV per condition (the audit's
contract), audits each with facefair audit's definitions, and gathers accuracy / MAE overall and per
group (race, gender, age group, race x gender) with bootstrap CIs, the gaps between groups, and the
paired drop against clean faces into robustness.csv and robustness.html.
With --from-predictions DIR, audits a folder of such CSVs from any model (one named clean.csv)."""


def register(subparsers) -> argparse.ArgumentParser:
    d, r = RobustnessConfig(), ReframeConfig()
    parser = subparsers.add_parser("robustness", help="accuracy per group under corruptions and re-framing",
                                   description=DESCRIPTION)
    parser.add_argument("run", nargs="?", help="run folder (config.yaml, splits.csv and the trained model)")
    parser.add_argument("--out", help="output folder (default RUN/robustness)")
    parser.add_argument("--corruptions", nargs="+", default=list(d.corruptions), metavar="NAME",
                        help=f"conditions to run (default: {' '.join(d.corruptions)}; known: "
                             f"{' '.join(CORRUPTIONS)} {REFRAME})")
    parser.add_argument("--severities", nargs="+", type=int, default=list(d.severities), metavar="S",
                        help="severities 1-5 (default: all)")
    parser.add_argument("--limit", type=int, help="a stratified sample of this many faces (default: the whole split)")
    parser.add_argument("--split", default=d.split, help=f"split of the run to evaluate (default {d.split})")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="tasks to audit (default: every task of the model)")
    parser.add_argument("--n-boot", type=int, default=d.n_boot, help=f"bootstrap resamples (default {d.n_boot})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the sample, corruptions and bootstrap")
    parser.add_argument("--min-group-size", type=int, default=d.min_group_size,
                        help=f"smaller groups are shown but kept out of gaps (default {d.min_group_size})")
    parser.add_argument("--work-size", type=int, default=d.work_size,
                        help=f"side faces are decoded to before corrupting (default {d.work_size})")
    parser.add_argument("--detectors", nargs="+", default=list(r.detectors), metavar="NAME",
                        help=f"detectors for re-framing (default: {' '.join(r.detectors)})")
    parser.add_argument("--paddings", nargs="+", type=float, default=list(r.paddings), metavar="P",
                        help=f"chip paddings for re-framing (default: {' '.join(f'{p:g}' for p in r.paddings)})")
    parser.add_argument("--border", type=float, default=r.border,
                        help=f"edge padding added around a tight crop before detection (default {r.border})")
    parser.add_argument("--detection-cache", metavar="DIR",
                        help="keep each detector's faces here (JSON): auditing other models on the same faces "
                        "re-aligns them without detecting again")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    add_device_flag(parser, d.device)
    add_tta_flag(parser)
    add_bf16_flag(parser, d.bf16)
    parser.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    parser.add_argument("--from-predictions", metavar="DIR",
                        help="audit a folder of per-condition predictions CSVs (any model) instead of running one")
    parser.set_defaults(func=run_command)
    return parser


def config_from_args(args) -> RobustnessConfig:
    return RobustnessConfig(
        corruptions=tuple(args.corruptions), severities=tuple(args.severities), limit=args.limit, split=args.split,
        tasks=tuple(args.tasks) if args.tasks else None,
        work_size=args.work_size, n_boot=args.n_boot, seed=args.seed, min_group_size=args.min_group_size,
        batch_size=args.batch_size, device=args.device, tta=args.tta, bf16=args.bf16, trust_checkpoint=args.trust_checkpoint,
        reframe=ReframeConfig(detectors=tuple(args.detectors), paddings=tuple(args.paddings), border=args.border,
                             cache_dir=args.detection_cache))


def run_command(args) -> int:
    config = config_from_args(args)
    if args.from_predictions:
        from facefair.robustness.runner import audit_folder
        out = Path(args.out) if args.out else Path(args.from_predictions).parent
        result = audit_folder(args.from_predictions, out, config)
    else:
        if not args.run:
            raise ValueError("give a run folder, or --from-predictions DIR")
        from facefair.robustness.runner import run_robustness
        out = Path(args.out) if args.out else Path(args.run) / "robustness"
        result = run_robustness(args.run, out, config)
    print(json.dumps({"out": str(out), "faces": len(result.faces), "conditions": len(result.predictions),
                      "rows": len(result.table), "seconds": round(result.seconds, 1),
                      "files": ["robustness.csv", "robustness.html", "predictions/"]}, indent=1))
    return 0
