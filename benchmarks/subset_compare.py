"""Paired comparison of two runs of ``benchmarks/augmentation.py`` on its clean-test row subsets
(children 0-9 gender, Others race, all rows), against any reference variant, not only the recipe.

    .venv/bin/python benchmarks/subset_compare.py --out-dir runs/aug-recipe11 --seeds 2 \\
        --reference quality --other quality-dro --out benchmarks/results/dro-vs-quality-s2.csv

Reads RUN/subsets/*.csv written by ``augmentation.py analyse``.  With one seed a side p is exact
McNemar for accuracy and the paired bootstrap for MAE; with several, every seed's runs are paired
on the same faces and pooled as ``facefair audit --compare`` pools seeds.  ``p_holm``: Holm over
these checks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

CHECKS = [("children_0-9", "gender", "accuracy"), ("all_test_rows", "gender", "accuracy"),
          ("race_Others", "race", "accuracy"), ("all_test_rows", "race", "accuracy"),
          ("all_test_rows", "age_group", "accuracy"), ("all_test_rows", "age", "mae"), ("age_70+", "age", "mae")]


def main(argv: list[str] | None = None) -> None:
    from augmentation import compare_subset
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="runs/aug-recipe11")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2])
    parser.add_argument("--reference", default="quality")
    parser.add_argument("--other", default="quality-dro")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    rows = []
    for subset, task, metric in CHECKS:
        entries = {v: [Path(args.out_dir) / v / f"s{seed}" / "subsets" / f"{subset}.csv" for seed in args.seeds]
                   for v in (args.reference, args.other)}
        table = compare_subset(entries, task, metric, args.bootstrap, args.reference)
        row = table[table.method == args.other].iloc[0]
        rows.append({"rows": subset, "task": task, "metric": metric, "seeds": " ".join(map(str, args.seeds)),
                     "reference": args.reference,
                     "reference_value": float(table[table.method == args.reference].iloc[0].value),
                     "method": args.other, "value": row.value, "difference": row.difference,
                     "ci_low": row.ci_low, "ci_high": row.ci_high, "p_value": row.p_value, "n_rows": row.n_rows})
    out = pd.DataFrame(rows)
    from statsmodels.stats.multitest import multipletests
    out["p_holm"] = multipletests(out["p_value"], method="holm")[1]
    out.to_csv(args.out, index=False)
    print(out.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
