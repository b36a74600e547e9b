"""Bias-mitigation benchmark on UTKFace: the same split, backbone, input size and epochs for every
method, then gender accuracy and fairness across race x gender groups with bootstrap CIs, a
table and a Pareto plot (accuracy vs degree of bias).

    .venv/bin/python benchmarks/mitigation.py                                  # the CPU defaults
    .venv/bin/python benchmarks/mitigation.py --limit 1500 --epochs 1 --size 48   # smoke run

Methods: baseline (standard training), reweight (loss weights by race x gender), balanced
(race x gender balanced sampling), adversarial (gradient-reversal adversary on race), fineface
(cross-layer attention experts, no group labels), thresholds (the baseline post-processed with
race-specific equalized-odds thresholds fitted on its validation predictions).

Writes benchmarks/results/mitigation.{csv,md} and mitigation_pareto.png; the runs stay under
--out-dir (compare them further with ``facefair audit --compare``).  Figures come from
``facefair.audit`` (stratified bootstrap, seeded): accuracy over all test rows, worst-group
accuracy / degree of bias / max-min ratio over race x gender groups, equalized-odds difference
of the gender prediction (Female positive) across races.  Groups with fewer than
--min-group-size test rows are left out of the gaps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from facefair.config import DataConfig, RunConfig, TrainConfig
from facefair.models.multitask import ModelConfig

GROUPS = ["race", "gender"]

#: name -> (TrainConfig overrides, needs group labels, description)
METHODS = {
    "baseline": ({"method": "standard"}, False, "standard training"),
    "reweight": ({"method": "reweight", "group_by": GROUPS}, True, "loss weights 1/|race x gender group|"),
    "balanced": ({"sampler": "balanced", "sampler_by": GROUPS}, True, "race x gender balanced sampling"),
    "adversarial": ({"method": "adversarial", "group_by": ["race"]}, True, "gradient-reversal adversary on race"),
    "fineface": ({"method": "fineface"}, False, "FineFACE cross-layer attention experts"),
    "thresholds": (None, True, "baseline + race-specific equalized-odds thresholds (fitted on val)"),
}

#: column -> (audit attribute, audit metric or None for overall accuracy, higher is better)
FIGURES = {
    "gender_accuracy": ("overall", None, True),
    "worst_group_accuracy": ("race:gender", "worst_group_accuracy", True),
    "degree_of_bias": ("race:gender", "degree_of_bias", False),
    "max_min_ratio": ("race:gender", "accuracy_max_min_ratio", False),
    "equalized_odds_difference": ("race", "equalized_odds_difference", False),
}


def run_config(args, name: str, splits_file: str | None) -> RunConfig:
    overrides = dict(METHODS[name][0])
    if name == "adversarial":
        overrides["method_options"] = {"adversary_weight": args.adversary_weight}
    if name == "fineface":
        overrides["method_options"] = {"expert_width": args.expert_width}
    out = Path(args.out_dir)
    return RunConfig(
        data=DataConfig(data=args.data, limit=args.limit, splits_file=splits_file, cache_dir=args.cache_dir),
        model=ModelConfig(backbone=args.backbone, image_size=args.size, weights=args.weights or None, tasks=args.tasks),
        train=TrainConfig(out_dir=str(out / name), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, progress=False, tensorboard=False, device=args.device, bf16=args.bf16,
                          results_csv=str(out / "benchmark_results.csv"), **overrides))


def train_methods(args) -> dict[str, dict]:
    from facefair.train.loop import train
    runs: dict[str, dict] = {}
    splits_file = None
    for name in [m for m in args.methods if METHODS[m][0] is not None]:
        run = Path(args.out_dir) / name
        if args.reuse and (run / "report.json").exists():
            print(f"== {name}: reusing {run}", flush=True)
            report = json.loads((run / "report.json").read_text())
        else:
            print(f"== {name}: training ({METHODS[name][2]})", flush=True)
            started = time.perf_counter()
            report = train(run_config(args, name, splits_file))
            report["run"]["benchmark_seconds"] = round(time.perf_counter() - started, 1)
            (run / "benchmark_timing.json").write_text(json.dumps({"seconds": report["run"]["benchmark_seconds"]}))
        timing = run / "benchmark_timing.json"
        seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
        runs[name] = {"dir": run, "predictions": run / "predictions.csv", "seconds": seconds,
                      "best_epoch": report["run"]["best_epoch"], "device": report["run"]["device"]}
        splits_file = splits_file or str(run / "splits.csv")  # every later method trains on this split
    return runs


def post_process(args, runs: dict[str, dict]) -> None:
    if "thresholds" not in args.methods:
        return
    if "baseline" not in runs:
        raise ValueError("the thresholds row post-processes the baseline: keep baseline in --methods")
    from facefair.mitigate.thresholds import threshold_run
    started = time.perf_counter()
    summary = threshold_run(runs["baseline"]["dir"], task="gender", attribute="race", constraint="equalized_odds",
                            device=args.device, seed=args.seed)
    out, base = Path(summary["out"]), runs["baseline"]
    seconds = time.perf_counter() - started + (base["seconds"] or 0)  # the baseline's training + post-processing
    runs["thresholds"] = {"dir": out, "predictions": out / "predictions.csv", "best_epoch": base["best_epoch"],
                          "seconds": round(seconds, 1), "device": base["device"]}


def figures(predictions: Path, args) -> dict[str, float]:
    from facefair.audit import AuditConfig, audit_predictions
    frame = pd.read_csv(predictions)
    result = audit_predictions(frame, AuditConfig(attributes=("race",), intersections=(tuple(GROUPS),),
                                                  tasks=("gender",), n_boot=args.bootstrap, seed=args.seed,
                                                  min_group_size=args.min_group_size), str(predictions))
    row: dict[str, float] = {"n_test": int(result.task("gender").n)}
    for column, (attribute, metric, _) in FIGURES.items():
        try:
            found = result.metric("gender", "overall", "all", "accuracy") if metric is None \
                else result.gap("gender", attribute, metric)
            row[column], row[f"{column}_lo"], row[f"{column}_hi"] = (float(found["value"]), float(found["ci_low"]),
                                                                     float(found["ci_high"]))
        except KeyError:  # e.g. every group too small in a smoke run
            row[column] = row[f"{column}_lo"] = row[f"{column}_hi"] = float("nan")
    sizes = result.group_metrics
    sizes = sizes[(sizes.attribute == "race:gender") & (sizes.metric == "accuracy")]
    row["groups_used"] = int((~sizes["flagged"]).sum())
    row["smallest_group"] = int(sizes["n"].min()) if len(sizes) else 0
    return row


def pareto_flags(table: pd.DataFrame) -> pd.Series:
    """Non-dominated on (higher accuracy, lower degree of bias)."""
    acc, dob = table["gender_accuracy"], table["degree_of_bias"]
    return pd.Series([not ((acc >= a) & (dob <= d) & ((acc > a) | (dob < d))).any() for a, d in zip(acc, dob)],
                     index=table.index)


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for _, row in table.iterrows():
        xerr = [[row.degree_of_bias - row.degree_of_bias_lo], [row.degree_of_bias_hi - row.degree_of_bias]]
        yerr = [[row.gender_accuracy - row.gender_accuracy_lo], [row.gender_accuracy_hi - row.gender_accuracy]]
        ax.errorbar(row.degree_of_bias, row.gender_accuracy, xerr=xerr, yerr=yerr, fmt="o" if row.pareto else "s",
                    capsize=3, label=f"{row.method}{' (Pareto)' if row.pareto else ''}")
        ax.annotate(row.method, (row.degree_of_bias, row.gender_accuracy), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    front = table[table.pareto].sort_values("degree_of_bias")
    ax.plot(front.degree_of_bias, front.gender_accuracy, "k--", lw=0.8, alpha=0.6)
    ax.set_xlabel("degree of bias (std of race x gender group accuracies; lower is fairer)")
    ax.set_ylabel("gender accuracy (test)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _cell(row, column: str, digits: int = 3) -> str:
    value, low, high = row[column], row[f"{column}_lo"], row[f"{column}_hi"]
    if pd.isna(value):
        return "n/a"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown(table: pd.DataFrame, args, setting: str) -> str:
    lines = [
        "# Bias mitigation on UTKFace (gender classification)", "",
        setting, "",
        "| method | group labels | gender acc | worst-group acc | degree of bias | max/min acc | EO difference "
        "| Pareto | train min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        minutes = "" if pd.isna(row.seconds) else f"{row.seconds / 60:.1f}"
        lines.append(f"| {row.method} | {'yes' if row.needs_group_labels else 'no'} | {_cell(row, 'gender_accuracy')} "
                     f"| {_cell(row, 'worst_group_accuracy')} | {_cell(row, 'degree_of_bias')} "
                     f"| {_cell(row, 'max_min_ratio')} | {_cell(row, 'equalized_odds_difference')} "
                     f"| {'yes' if row.pareto else ''} | {minutes} |")
    lines += ["",
              f"95% bootstrap CIs ({args.bootstrap} stratified resamples, seed {args.seed}, via `facefair.audit`). "
              "Worst-group accuracy, degree of bias (population std) and max/min ratio are over race x gender "
              f"groups with >= {args.min_group_size} test rows ({int(table.groups_used.iloc[0])} groups used, "
              f"smallest {int(table.smallest_group.iloc[0])} rows); the equalized-odds difference is fairlearn's "
              "(max of the TPR and FPR gaps, Female positive) across races. Pareto: no other method is at least "
              "as accurate and as fair and strictly better in one. `train min` is wall time including evaluation "
              "(thresholds: the baseline's plus fitting); "
              "FineFACE takes 5 optimiser steps per batch and two passes per image at inference, so equal epochs "
              "cost it several times the baseline's time. The thresholds row randomises some decisions (seeded).",
              ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface/UTKFace")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out-dir", default="runs/mitigation", help="run folders")
    parser.add_argument("--results", default="benchmarks/results", help="folder for mitigation.{csv,md,_pareto.png}")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--weights", default="local:mobilenet_v2", help="local backbone weights ('' for none)")
    parser.add_argument("--size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tasks", nargs="+", default=["gender"],
                        help="tasks every method trains (default gender: the table is about gender)")
    parser.add_argument("--adversary-weight", type=float, default=0.3)
    parser.add_argument("--expert-width", type=int, default=256, help="FineFACE expert width (paper: 1024)")
    parser.add_argument("--limit", type=int, help="seeded subset of the images (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument("--min-group-size", type=int, default=30)
    parser.add_argument("--cache-dir", default=".facefair-cache")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU (same for every method)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs in --out-dir instead of training")
    args = parser.parse_args()

    started = time.perf_counter()
    runs = train_methods(args)
    post_process(args, runs)
    rows = []
    for name, run in runs.items():
        rows.append({"method": name, "needs_group_labels": METHODS[name][1], "description": METHODS[name][2],
                     **figures(run["predictions"], args), "seconds": run["seconds"], "best_epoch": run["best_epoch"],
                     "run": str(run["dir"])})
    table = pd.DataFrame(rows)
    table["pareto"] = pareto_flags(table)
    setting = (f"Setting: {args.backbone} ({args.weights or 'random init'}), {args.size} px, {args.epochs} epoch(s), "
               f"batch {args.batch_size}, lr {args.lr}, tasks {'+'.join(args.tasks)}, seed {args.seed}, "
               f"{'all images' if not args.limit else f'{args.limit} images'} of {args.data}, one split for every "
               f"method ({runs[next(iter(runs))]['dir']}/splits.csv); adversary weight {args.adversary_weight}, "
               f"FineFACE expert width {args.expert_width}. Machine: {os.cpu_count()} CPU cores "
               f"({platform.processor() or platform.machine()}), device {runs[next(iter(runs))]['device']}. "
               f"Wall time of this invocation {(time.perf_counter() - started) / 60:.1f} min.")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "mitigation.csv", index=False)
    text = markdown(table, args, setting)
    (results / "mitigation.md").write_text(text)
    plot(table, results / "mitigation_pareto.png", f"UTKFace gender, {args.backbone} {args.size}px, {args.epochs} ep")
    print(text)
    print(f"written {results / 'mitigation.csv'}, {results / 'mitigation.md'}, {results / 'mitigation_pareto.png'}")


if __name__ == "__main__":
    main()
