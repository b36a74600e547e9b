"""fp32 vs bf16 inference, paired on the same faces: does bf16 change any label beyond noise?

Give the predictions of the same split evaluated twice (``facefair evaluate RUN --no-bf16 --out A``
and ``--bf16 --out B``).  Per task: the share of faces whose predicted label changes, each
precision's accuracy, the difference with the exact McNemar test on the discordant faces (the
audit's paired test), and for age the MAE of each and the mean absolute change in years.

    python benchmarks/bf16_paired.py A/predictions.csv B/predictions.csv [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import numpy as np
import pandas as pd

from facefair.audit import load_predictions
from facefair.audit.paired import mcnemar_p


def paired_rows(fp32: pd.DataFrame, bf16: pd.DataFrame) -> list[dict]:
    if list(fp32["path"]) != list(bf16["path"]):
        raise ValueError("the two tables do not list the same faces in the same order")
    rows = []
    for task in [c[: -len("_pred")] for c in fp32 if c.endswith("_pred") and f"{c[:-5]}_true" in fp32]:
        truth, a, b = fp32[f"{task}_true"], fp32[f"{task}_pred"], bf16[f"{task}_pred"]
        scored = truth.notna() & a.notna() & b.notna()
        if task == "age":
            t, x, y = (pd.to_numeric(s[scored]).to_numpy(float) for s in (truth, a, b))
            rows.append({"task": task, "n": int(scored.sum()), "mae_fp32": float(np.abs(x - t).mean()),
                         "mae_bf16": float(np.abs(y - t).mean()), "mean_abs_change_years": float(np.abs(x - y).mean()),
                         "max_abs_change_years": float(np.abs(x - y).max())})
            continue
        right_a = (a[scored] == truth[scored]).to_numpy(float)
        right_b = (b[scored] == truth[scored]).to_numpy(float)
        p, only_fp32, only_bf16 = mcnemar_p(right_a, right_b)
        rows.append({"task": task, "n": int(scored.sum()), "changed_labels": int((a[scored] != b[scored]).sum()),
                     "changed_share": float((a[scored] != b[scored]).mean()),
                     "accuracy_fp32": float(right_a.mean()), "accuracy_bf16": float(right_b.mean()),
                     "difference_points": float(100 * (right_b.mean() - right_a.mean())),
                     "only_fp32_right": only_fp32, "only_bf16_right": only_bf16, "mcnemar_p": p})
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", help="predictions.csv evaluated with --no-bf16")
    parser.add_argument("bf16", help="predictions.csv of the same split with --bf16")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = paired_rows(load_predictions(args.fp32)[0], load_predictions(args.bf16)[0])
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
