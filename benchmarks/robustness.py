"""Robustness audit of one run folder -> benchmarks/results/robustness-<name>.csv (+ .md).

    .venv/bin/python benchmarks/robustness.py runs/robust-small --name small-64px \
        --label "small model: mobilenetv2 64 px, 3 epochs (NOT the CPU recipe)" --limit 1000

The CSV is the tidy robustness.csv (see docs/robustness.md; per group and condition, so it is not
tracked: benchmarks/README.md); the .md, which is, names the model plainly and
gives, per task, the clean figure and each condition's overall drop, worst race, degree of bias
by race and the race that drops most, at severity 3 and for every re-framing, with wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

from facefair.robustness import ReframeConfig, RobustnessConfig, run_robustness
from facefair.robustness.results import summary_table


def markdown(summary, label: str, run: str, config: RobustnessConfig, seconds: float, faces: int,
             note: str = "") -> str:
    lines = [f"# Robustness audit: {label}", "",
             f"Run `{run}`; {faces} test faces (stratified sample), {config.n_boot} bootstrap resamples, "
             f"faces decoded at {config.work_size} px; wall time {seconds / 60:.1f} min on "
             f"{platform.machine()} ({platform.processor() or 'cpu'}). Drops are paired (same faces clean vs "
             "corrupted); positive = worse. Accuracy for gender/race/age_group, MAE in years for age.", *([note] if note else []),
             ""]
    for task, part in summary.groupby("task", sort=False):
        lines += [f"## {task}", "", "| condition | severity / padding | overall | drop vs clean | worst race | "
                  "its figure | degree of bias (race) | race that drops most | its drop | clean-worst falls fastest |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |"]
        for r in part.itertuples():
            def f(v, d=3):
                return "–" if v is None or v != v else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
            fastest = "–" if r.worst_falls_fastest is None else ("yes" if r.worst_falls_fastest else "no")
            lines.append(f"| {r.corruption} | {r.severity:g} | {f(r.overall)} | {f(r.overall_drop)} | "
                         f"{f(r.worst_group)} | {f(r.worst_value)} | {f(r.degree_of_bias)} | "
                         f"{f(r.largest_drop_group)} | {f(r.largest_drop)} | {fastest} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder")
    parser.add_argument("--name", required=True, help="results file name: robustness-NAME.csv")
    parser.add_argument("--label", required=True, help="what the model is, in plain words (goes into the .md)")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--detectors", nargs="+", default=["dlib-hog", "mtcnn"])
    parser.add_argument("--corruptions", nargs="+", default=None)
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--work-size", type=int, default=224)
    parser.add_argument("--out-dir", help="robustness folder (default RUN/robustness)")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--from-predictions", metavar="DIR",
                        help="audit per-condition predictions CSVs already written (e.g. gathered from two "
                             "partial runs on the same faces) instead of running the model")
    args = parser.parse_args(argv)

    config = RobustnessConfig(limit=args.limit, n_boot=args.n_boot, severities=tuple(args.severities),
                              work_size=args.work_size,
                              reframe=ReframeConfig(detectors=tuple(args.detectors)),
                              **({"corruptions": tuple(args.corruptions)} if args.corruptions else {}))
    out = Path(args.out_dir) if args.out_dir else Path(args.run) / "robustness"
    started = time.perf_counter()
    if args.from_predictions:
        from facefair.robustness.runner import audit_folder
        result = audit_folder(args.from_predictions, out, config)
    else:
        result = run_robustness(args.run, out, config)
    seconds = time.perf_counter() - started
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "robustness.csv", results / f"robustness-{args.name}.csv")
    summary = summary_table(result.table, "race", 3)
    (results / f"robustness-{args.name}.md").write_text(
        markdown(summary, args.label, args.run, config, seconds, len(result.faces),
                 f"Audited from the predictions CSVs in `{args.from_predictions}` (the wall time is the audit's only)."
                 if args.from_predictions else ""))
    print(json.dumps({"csv": str(results / f"robustness-{args.name}.csv"), "rows": len(result.table),
                      "faces": len(result.faces), "minutes": round(seconds / 60, 1)}, indent=1))


if __name__ == "__main__":
    main()
