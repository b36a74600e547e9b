"""A small ensemble of ``benchmarks/augmentation.py`` runs (one variant, several seeds): the members'
class probabilities and age predictions averaged on the clean test rows, then compared *paired*
with each member on the same faces (the subset checks of ``subset_compare.py``: children 0-9
gender, Others race, all rows, 70+ MAE) and the issue's target figures (``accuracy.py``'s
definitions).  Reads each run's predictions.csv, so archived runs (``augmentation.py restore``)
work; an ensemble of k members costs k trainings and k forward passes, so it is over the recipe's
budget: this says what that would buy.

    .venv/bin/python benchmarks/ensemble.py --out-dir runs/aug-recipe11 --variant quality --seeds 0 2 \\
        --out benchmarks/results/ensemble-quality-s02.csv

p: exact McNemar for accuracy (one run a side), the paired bootstrap for MAE; ``p_holm``: Holm
over every row of the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from facefair.evaluate.ensemble import average_predictions


def main(argv: list[str] | None = None) -> None:
    from accuracy import group_figures
    from augmentation import compare_subset, write_subsets
    from statsmodels.stats.multitest import multipletests
    from subset_compare import CHECKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="runs/aug-recipe11")
    parser.add_argument("--variant", default="quality")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("an ensemble needs at least two --seeds")

    runs = {f"s{seed}": Path(args.out_dir) / args.variant / f"s{seed}" for seed in args.seeds}
    frames = {name: pd.read_csv(run / "predictions.csv") for name, run in runs.items()}
    runs["ensemble"] = Path(args.out_dir) / args.variant / ("ensemble-" + "-".join(frames))
    runs["ensemble"].mkdir(parents=True, exist_ok=True)
    frames["ensemble"] = average_predictions(list(frames.values()))
    frames["ensemble"].to_csv(runs["ensemble"] / "predictions.csv", index=False)
    for name, frame in frames.items():  # the same row subsets as augmentation.py analyse writes
        write_subsets(frame, runs[name])

    rows = []
    for member in (name for name in runs if name != "ensemble"):
        for subset, task, metric in CHECKS:
            entries = {name: [runs[name] / "subsets" / f"{subset}.csv"] for name in (member, "ensemble")}
            table = compare_subset(entries, task, metric, args.bootstrap, member)
            row = table[table.method == "ensemble"].iloc[0]
            rows.append({"variant": args.variant, "reference": member, "rows": subset, "task": task,
                         "metric": metric, "reference_value": float(table[table.method == member].iloc[0].value),
                         "ensemble_value": row.value, "difference": row.difference, "ci_low": row.ci_low,
                         "ci_high": row.ci_high, "p_value": row.p_value, "n_rows": row.n_rows})
    out = pd.DataFrame(rows)
    out["p_holm"] = multipletests(out["p_value"], method="holm")[1]
    out.to_csv(args.out, index=False)
    print(out.round(4).to_string(index=False))

    targets = {name: group_figures(run / "predictions.csv") for name, run in runs.items()}
    Path(args.out).with_suffix(".targets.json").write_text(json.dumps(targets, indent=1) + "\n")
    print(pd.DataFrame(targets).round(4).to_string())


if __name__ == "__main__":
    main()
