"""Train the CPU recipe on UTKFace and write its test figures next to the issue's targets.

    .venv/bin/python benchmarks/accuracy.py --config configs/utkface-cpu.yaml

Writes benchmarks/results/accuracy.json (figures, targets, pass/fail, wall time, machine) and
leaves the run folder (report.json, predictions.csv for `facefair audit`) in place.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import yaml

from facefair.config import RunConfig
from facefair.train.loop import train

#: (metric in report["headline"], target, higher is better)
TARGETS = {
    "gender_accuracy": (0.92, True),
    "race_accuracy": (0.82, True),
    "age_mae": (5.5, False),
    "age_group_accuracy": (0.55, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/utkface-cpu.yaml")
    parser.add_argument("--data", help="override the config's dataset path")
    parser.add_argument("--out-dir", help="override the run folder")
    parser.add_argument("--out", default="benchmarks/results/accuracy.json")
    args = parser.parse_args()

    config = RunConfig.from_dict(yaml.safe_load(Path(args.config).read_text()))
    if args.data:
        config.data.data = args.data
    if args.out_dir:
        config.train.out_dir = args.out_dir
    started = time.perf_counter()
    report = train(config)
    wall = time.perf_counter() - started
    figures = report["headline"]
    checks = {}
    for metric, (target, higher) in TARGETS.items():
        value = figures.get(metric)
        met = value is not None and (value >= target if higher else value <= target)
        checks[metric] = {"value": value, "target": target, "met": met,
                          "gap": None if value is None else round(value - target, 4)}
        print(f"{metric:20s} {value!s:>8}  target {'>=' if higher else '<='} {target}  {'met' if met else 'NOT met'}")
    print(f"wall time {wall / 60:.1f} min (includes cache build if it was not there)")
    result = {"config": args.config, "run": config.train.out_dir, "wall_seconds": round(wall, 1),
              "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "device": report["run"]["device"]},
              "split_sizes": report["run"]["split_sizes"], "best_epoch": report["run"]["best_epoch"],
              "test": figures, "targets": checks}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
