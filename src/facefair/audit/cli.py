"""``facefair audit``: the command line over ``audit_predictions`` and ``compare_runs``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

from facefair.audit.config import AuditConfig
from facefair.run import AUDIT_DIR, PREDICTIONS

log = logging.getLogger(__name__)

DESCRIPTION = """Fairness audit of a predictions table (from `facefair evaluate`, or any model that writes the
same CSV): per-group accuracy, macro-F1, FPR/FNR, selection rate, ROC-AUC, ECE and age MAE for every
task and sensitive attribute (and their intersections), the gaps between groups with a test of
each (Holm-corrected over the whole audit: "significant" or "consistent with no difference"),
the smallest difference each group could show, bootstrap confidence intervals (resampled cell
counts: a 10M-row table costs about what a 10k-row one does), calibration curves and confusion
matrices. Writes audit.json, group_metrics.csv,
gaps.csv, calibration.csv, confusion_matrices.csv and a self-contained audit.html.
With --compare, a paired comparison of runs evaluated on the same test rows (rows matched by
image path): every metric and gap's difference to --reference with a paired bootstrap CI, an
exact McNemar test for accuracy, Holm-corrected verdicts, seed spread for several seeds per
method and a Pareto column; writes compare.csv, compare.json and compare.html."""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("audit", help="fairness audit of a predictions CSV (or compare several runs)",
                                   description=DESCRIPTION)
    parser.add_argument("predictions", nargs="?",
                        help="predictions CSV, or a run folder holding predictions.csv")
    parser.add_argument("--out", help="output folder (default: RUN/audit next to predictions.csv, "
                                      "NAME-audit next to another CSV, ./audit-compare with --compare)")
    # Defaults come from AuditConfig so the command line and the library can never disagree.
    d = AuditConfig()
    parser.add_argument("--n-boot", type=int, default=d.n_boot,
                        help=f"bootstrap resamples (0: no intervals; default {d.n_boot})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"bootstrap seed (default {d.seed})")
    parser.add_argument("--ci-level", type=float, default=d.ci_level,
                        help=f"confidence level of the intervals (default {d.ci_level})")
    parser.add_argument("--alpha", type=float, default=d.alpha,
                        help=f"family-wise error rate of the gap verdicts, Holm over every tested gap (default {d.alpha})")
    parser.add_argument("--meaningful-gap", type=float, default=d.meaningful_gap,
                        help="smallest accuracy/rate gap that matters (share, 0.05 = 5 points): groups that could not "
                             f"detect it are named (default {d.meaningful_gap})")
    parser.add_argument("--min-group-size", type=int, default=d.min_group_size,
                        help="groups (and error-rate cells) with fewer labelled rows are flagged 'too small to "
                             f"judge' and left out of gaps (default {d.min_group_size})")
    parser.add_argument("--attributes", nargs="+", default=list(d.attributes), metavar="ATTR",
                        help=f"sensitive attribute columns to group by (default: {' '.join(d.attributes)})")
    intersections = [":".join(p) for p in d.intersections]
    parser.add_argument("--intersections", nargs="*", default=intersections, metavar="A:B",
                        help="intersections to audit, e.g. race:gender race:age_group (none: give the flag alone; "
                             f"default {' '.join(intersections)})")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="tasks to audit (default: every task with predictions)")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="count rows that repeat an earlier row's path as often as they appear (default: once)")
    parser.add_argument("--bins", type=int, default=d.n_bins, help=f"calibration bins (default {d.n_bins})")
    parser.add_argument("--gallery", type=int, default=4, metavar="N",
                        help="most confident errors shown per race and task (0: none; needs the images)")
    parser.add_argument("--compare", nargs="+", metavar="[NAME=]RUN",
                        help="paired comparison of runs on the same test rows: RUN (a run folder or predictions "
                             "CSV, named by its folder) or NAME=RUN,RUN,... (several seeds of one method; globs "
                             "allowed, e.g. base='runs/b/s*'); differences to --reference with paired bootstrap "
                             "CIs, exact McNemar / bootstrap p-values and Holm correction")
    parser.add_argument("--reference", metavar="NAME",
                        help="method every other one is compared against (default: the first)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="names of the --compare runs given without NAME=")
    parser.set_defaults(func=run_audit_command)
    return parser


def parse_intersections(items) -> tuple[tuple[str, ...], ...]:
    out = []
    for item in items or ():
        parts = tuple(p.strip() for p in item.replace(",", ":").split(":") if p.strip())
        if len(parts) < 2:
            raise ValueError(f"--intersections expects A:B (e.g. race:gender), got {item!r}")
        out.append(parts)
    return tuple(out)


def config_from_args(args) -> AuditConfig:
    return AuditConfig(attributes=tuple(args.attributes), intersections=parse_intersections(args.intersections),
                       tasks=tuple(args.tasks) if args.tasks else None, n_boot=args.n_boot, seed=args.seed,
                       ci_level=args.ci_level, min_group_size=args.min_group_size, n_bins=args.bins,
                       alpha=args.alpha, meaningful_gap=args.meaningful_gap,
                       keep_duplicates=getattr(args, "keep_duplicates", False))


def default_out(predictions: str) -> Path:
    path = Path(predictions)
    if path.is_dir():
        return path / "audit"
    return path.parent / (AUDIT_DIR if path.name == PREDICTIONS else f"{path.stem}-audit")


def run_audit_command(args) -> int:
    from facefair.audit.compare import compare_runs, write_comparison
    from facefair.audit.core import audit_predictions
    from facefair.audit.groups import load_predictions
    from facefair.audit.output import write_audit

    config = config_from_args(args)
    if args.compare:
        runs = ([args.predictions] if args.predictions else []) + list(args.compare)
        out = Path(args.out) if args.out else Path("audit-compare")
        table = compare_runs(runs, config, reference=args.reference, names=args.names)
        paths = write_comparison(table, out, config)
        significant = table[table.significant.astype(bool)]
        _report({"out": str(out), "reference": table.attrs["reference"],
                 "runs": {k: len(v) for k, v in table.attrs["runs"].items()},
                 "files": sorted(p.name for p in paths.values()), "significant": list(significant.verdict)})
        return 0
    if not args.predictions:
        raise ValueError("give a predictions CSV or run folder, or --compare RUN [RUN ...]")
    frame, source = load_predictions(args.predictions)
    result = audit_predictions(frame, config, source)
    out = Path(args.out) if args.out else default_out(args.predictions)
    paths = write_audit(result, out, error_galleries(frame, result, args.gallery))
    _report({"out": str(out), "files": sorted(p.name for p in paths.values()), "summary": result.summary})
    return 0


def error_galleries(frame, result, per_group: int) -> dict[str, str]:
    """The most confident errors per race for each classification task, as HTML, when the
    images are on this machine (a third party's CSV may name files we do not have)."""
    if per_group <= 0 or "path" not in frame or not frame["path"].head(20).map(lambda p: Path(str(p)).exists()).all():
        return {}
    from facefair.explain.gallery import confident_errors_gallery
    attribute = "race" if "race" in frame else None
    if attribute is None:
        return {}
    return {info.name: confident_errors_gallery(frame, info.name, per_group=per_group, group_attribute=attribute)
            for info in result.tasks if info.kind == "classification"}


def _report(payload: dict, stream: Optional[object] = None) -> None:
    print(json.dumps(payload, indent=1, ensure_ascii=False), file=stream)
