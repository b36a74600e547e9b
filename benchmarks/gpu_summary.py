"""Gather benchmarks/gpu.sh's accuracy runs into gpu-accuracy.json and gpu-runs.tar.gz.

    python benchmarks/gpu_summary.py WORK RESULTS --data-kind real-subset --weights FILE [--smoke]

WORK holds, per seed S, ``train-sS.status`` ("exit-code seconds"), ``accuracy-sS.json``
(benchmarks/accuracy.py --from-run) and ``runs/sS``; the run folders travel back without weights
(run_archive.archive_run) so that their test predictions can be compared paired with CPU runs.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

from run_archive import archive_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--data-kind", required=True, help="real, real-subset or synthetic")
    parser.add_argument("--weights", default="", help="what the runs started from (empty: no runs were made)")
    parser.add_argument("--pack-manifest", type=Path, default=Path(".gpu-pack/manifest.json"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)

    seeds = {}
    for status in sorted(args.work.glob("train-s*.status")):
        seed = status.stem.removeprefix("train-")
        code, seconds = map(int, status.read_text().split())
        scored = args.work / f"accuracy-{seed}.json"
        seeds[seed] = {"exit_code": code, "wall_s": seconds,
                       **(json.loads(scored.read_text()) if scored.is_file() else {"error": "no report.json"})}
        if (args.work / "runs" / seed).is_dir():
            archive_run(args.work / "runs" / seed, args.work / "archive" / seed)
    if (args.work / "archive").is_dir():
        with tarfile.open(args.results / "gpu-runs.tar.gz", "w:gz") as archive:
            archive.add(args.work / "archive", arcname="gpu-runs")
    pack = (json.loads(args.pack_manifest.read_text())
            if args.data_kind == "real-subset" and args.pack_manifest.is_file() else None)
    out = args.results / "gpu-accuracy.json"
    out.write_text(json.dumps({
        "what": "facefair train --config configs/utkface-cpu-robust.yaml on the GPU with AMP + channels-last; "
                "test figures of each seed on the stratified split of the data below",
        "data": args.data_kind, "pack": pack, "smoke": args.smoke,
        "meaningful": args.data_kind.startswith("real") and not args.smoke,
        "weights": args.weights or None, "seeds": seeds}, indent=1))
    print(f"written {out}: " + "; ".join(
        f"{seed}: exit {v['exit_code']}, gender {v.get('test', {}).get('gender_accuracy')}, {v['wall_s']} s"
        for seed, v in seeds.items()))
    return 0 if seeds and all(v["exit_code"] == 0 for v in seeds.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
