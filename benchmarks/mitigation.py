"""Bias-mitigation benchmark on UTKFace that can tell an effect from noise.

Every method trains on the same split (the recipe's seed-0 split by default), with the same backbone,
input size, epochs and budget, for several seeds; all are evaluated on the same untouched test rows,
and each method is compared with the baseline *paired* (same rows resampled for both runs): paired
bootstrap CIs of the differences, exact McNemar p-values for accuracy, Holm correction over all
comparisons (``facefair audit --compare``'s machinery).

    .venv/bin/python benchmarks/mitigation.py train       # train every missing run (resumable)
    .venv/bin/python benchmarks/mitigation.py analyse     # paired comparison -> benchmarks/results/
    .venv/bin/python benchmarks/mitigation.py train --limit 1500 --epochs 1 --size 48 --seeds 0  # smoke

Methods: baseline (standard training), reweight (loss weights by race x gender), balanced (race x
gender balanced sampling), adversarial (gradient-reversal adversary on race), fineface (cross-layer
attention experts, no group labels), thresholds (each baseline seed post-processed with race-specific
equalized-odds thresholds fitted on its validation predictions), and two data-quality variants from
``facefair clean``: clean-labels (the baseline without the train rows whose gender label cleanlab
flags), random-drop (its control: as many train rows drawn at random), downweight (those flagged
labels kept at --downweight-factor of the loss) and dedup (the baseline without the train rows
whose near-duplicate cluster reaches val/test).
Test rows are never removed, so every run stays paired with the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

GROUPS = ["race", "gender"]

#: name -> (TrainConfig overrides or None for post-processing/data variants, needs group labels, description)
METHODS = {
    "baseline": ({"method": "standard"}, False, "standard training"),
    "reweight": ({"method": "reweight", "group_by": GROUPS}, True, "loss weights 1/|race x gender group|"),
    "balanced": ({"sampler": "balanced", "sampler_by": GROUPS}, True, "race x gender balanced sampling"),
    "adversarial": ({"method": "adversarial", "group_by": ["race"]}, True, "gradient-reversal adversary on race"),
    "fineface": ({"method": "fineface"}, False, "FineFACE cross-layer attention experts"),
    "thresholds": (None, True, "baseline + race-specific equalized-odds thresholds (fitted on val)"),
    "clean-labels": ({"method": "standard"}, False, "baseline without train rows whose gender label cleanlab flags"),
    "dedup": ({"method": "standard"}, False, "baseline without train rows duplicated in val/test"),
    "random-drop": ({"method": "standard"}, False, "baseline without as many random train rows as clean-labels drops"),
    "downweight": ({"method": "standard"}, False, "baseline with flagged gender labels at 0.3 of the loss weight"),
}
#: variants that train on the baseline's split with some train rows held out (data.exclusions.hold_out)
DATA_VARIANTS = ("clean-labels", "dedup", "random-drop")


def run_dir(args, method: str, seed: int) -> Path:
    return Path(args.out_dir) / method / f"s{seed}"


def _root(args):
    from facefair.data.splits import data_root
    return data_root(args.data)


def excluded_rows(args, method: str, splits: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Which rows of ``splits`` (train rows only) the data-quality variant leaves out.

    Files are matched to the split by ``facefair.data.exclusions`` (paths under the data folder,
    not file names).  random-drop is the control for clean-labels: as many train rows, drawn
    uniformly with the run's seed, so "fewer rows" and "these rows" can be told apart."""
    from facefair.data.exclusions import copies_across, listed_rows
    train = (splits["split"] == "train").to_numpy()
    if method == "random-drop":
        count = int(excluded_rows(args, "clean-labels", splits).sum())
        order = splits.index[train][np.argsort(splits.loc[train, "path"].astype(str).to_numpy(), kind="stable")]
        drawn = np.random.default_rng(seed).choice(len(order), size=count, replace=False)
        return splits.index.isin(order[drawn])
    if method == "clean-labels":
        return listed_rows(splits["path"], args.label_issues, _root(args), task="gender") & train
    if method == "dedup":
        return copies_across(splits["path"], splits["split"], args.duplicates, _root(args))
    return np.zeros(len(splits), dtype=bool)


def _gender_race(path: str) -> str:
    """UTKFace's AGE_GENDER_RACE_... name -> 'GENDER_RACE' ('?' for a missing field)."""
    parts = os.path.basename(str(path)).split("_")
    return "_".join(p if len(p) == 1 else "?" for p in (parts + ["", ""])[1:3])


def base_splits(args) -> str:
    """The split every run uses: ``--splits``, with the train rows cut to a stratified (race x gender)
    ``--train-limit`` subset when one is given.  Val and test rows are never touched, so every run
    is scored on the same test faces."""
    if not args.train_limit:
        return args.splits
    out = Path(args.out_dir) / f"splits-train{args.train_limit}.csv"
    if not out.exists():
        from sklearn.model_selection import train_test_split
        splits = pd.read_csv(args.splits)
        train = splits[splits["split"] == "train"]
        if args.train_limit < len(train):
            keys = train["path"].map(_gender_race)
            keep, _ = train_test_split(train.index, train_size=args.train_limit, random_state=0, stratify=keys)
            from facefair.data.exclusions import HELD_OUT
            splits.loc[train.index.difference(keep), "split"] = HELD_OUT
        out.parent.mkdir(parents=True, exist_ok=True)
        splits.to_csv(out, index=False)
    return str(out)


def splits_for(args, method: str, seed: int) -> str:
    if method not in DATA_VARIANTS:
        return base_splits(args)
    splits = pd.read_csv(base_splits(args))
    drop = excluded_rows(args, method, splits, seed)
    name = f"splits-{method}-s{seed}.csv" if method == "random-drop" else f"splits-{method}.csv"
    out = Path(args.out_dir) / method / name
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        from facefair.data.exclusions import hold_out
        hold_out(splits, drop).to_csv(out, index=False)
        print(f"   {method}: {int(drop.sum())} of {int((splits.split == 'train').sum())} train rows held out -> {out}",
              flush=True)
    return str(out)


def gender_issues(args) -> str:
    """The gender rows of --label-issues (what clean-labels drops), as the file --downweight reads."""
    out = Path(args.out_dir) / "downweight" / "gender_label_issues.csv"
    if not out.exists():
        issues = pd.read_csv(args.label_issues)
        out.parent.mkdir(parents=True, exist_ok=True)
        issues[issues["task"] == "gender"].to_csv(out, index=False)
    return str(out)


def run_config(args, method: str, seed: int):
    from facefair.config import DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    overrides = dict(METHODS[method][0])
    if method == "adversarial":
        overrides["method_options"] = {"adversary_weight": args.adversary_weight}
    if method == "fineface":
        overrides["method_options"] = {"expert_width": args.expert_width}
    out = run_dir(args, method, seed)
    downweight = [gender_issues(args)] if method == "downweight" else []
    return RunConfig(
        data=DataConfig(data=args.data, limit=args.limit, splits_file=splits_for(args, method, seed),
                        cache_dir=args.cache_dir, downweight=downweight, downweight_factor=args.downweight_factor),
        model=ModelConfig(backbone=args.backbone, image_size=args.size, weights=args.weights or None, tasks=args.tasks),
        train=TrainConfig(out_dir=str(out), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          warmup_epochs=args.warmup_epochs, seed=seed, progress=False, tensorboard=False,
                          device=args.device, bf16=args.bf16, tta=args.tta,
                          results_csv=str(Path(args.out_dir) / "benchmark_results.csv"), **overrides))


def plan(args) -> list[tuple[str, int]]:
    """Seed-major order, so a budget that runs out still leaves whole seeds of every method."""
    order = [(m, s) for s in args.seeds for m in args.methods if m != "fineface"]
    # FineFACE costs several baseline runs: after every seed of the others, on its own seeds.
    return order + [("fineface", s) for s in args.fineface_seeds if "fineface" in args.methods]


def train_all(args) -> None:
    from facefair.train.loop import train
    started = time.perf_counter()
    for method, seed in plan(args):
        out = run_dir(args, method, seed)
        if (out / "predictions.csv").exists():
            print(f"== {method} s{seed}: done already ({out})", flush=True)
            continue
        if method in (*DATA_VARIANTS, "downweight"):
            needed = args.duplicates if method == "dedup" else args.label_issues
            if not Path(needed).exists():
                print(f"== {method} s{seed}: skipped, {needed} not written yet (facefair clean)", flush=True)
                continue
        t0 = time.perf_counter()
        if method == "thresholds":
            base = run_dir(args, "baseline", seed)
            if not (base / "predictions.csv").exists():
                print(f"== thresholds s{seed}: skipped, baseline s{seed} missing", flush=True)
                continue
            from facefair.mitigate.thresholds import threshold_run
            print(f"== thresholds s{seed}: post-processing {base}", flush=True)
            try:
                threshold_run(base, task="gender", attribute="race", constraint="equalized_odds",
                              device=args.device, seed=seed, out_dir=out)
            except ValueError as error:  # e.g. a group with one class in a smoke run's val split
                print(f"   thresholds s{seed}: not fitted: {error}", flush=True)
                continue
            base_seconds = json.loads((base / "benchmark_timing.json").read_text())["seconds"]
        else:
            print(f"== {method} s{seed}: training ({METHODS[method][2]})", flush=True)
            train(run_config(args, method, seed))
            base_seconds = 0.0
        seconds = round(time.perf_counter() - t0 + base_seconds, 1)
        (out / "benchmark_timing.json").write_text(json.dumps({"seconds": seconds, "method": method, "seed": seed}))
        print(f"   {method} s{seed}: {seconds / 60:.1f} min (elapsed {(time.perf_counter() - started) / 60:.1f})",
              flush=True)


def setting_text(args) -> str:
    fineface = f" (FineFACE {' '.join(map(str, args.fineface_seeds))})" if "fineface" in args.methods else ""
    return (f"Setting: {args.backbone} ({args.weights or 'random init'}), {args.size} px, {args.epochs} epoch(s) "
            f"(warm-up {args.warmup_epochs}), batch {args.batch_size}, lr {args.lr}, bf16 {args.bf16}, flip-TTA "
            f"{args.tta}, tasks {'+'.join(args.tasks)}, seeds {' '.join(map(str, args.seeds))}"
            f"{fineface}, {'all images' if not args.limit else f'{args.limit} images'}"
            f" of {args.data}, one split for every run ({args.splits}; "
            f"{'all train rows' if not args.train_limit else f'train rows cut to a race x gender stratified {args.train_limit}'}"
            f", every val/test row). Machine: {os.cpu_count()} CPU cores "
            f"({platform.processor() or platform.machine()}).")


#: table column -> (audit attribute, metric); "overall" is every test row
FIGURES = {
    "gender accuracy": ("overall", "accuracy"),
    "worst race x gender accuracy": ("race:gender", "worst_group_accuracy"),
    "degree of bias (race x gender)": ("race:gender", "degree_of_bias"),
    "equalized-odds diff (race)": ("race", "equalized_odds_difference"),
}


def finished_runs(args) -> dict[str, list[Path]]:
    runs: dict[str, list[Path]] = {}
    for method in args.methods:
        for seed in (args.fineface_seeds if method == "fineface" else args.seeds):
            path = run_dir(args, method, seed)
            if (path / "predictions.csv").exists():
                runs.setdefault(method, []).append(path)
    if "baseline" not in runs:
        raise SystemExit("no finished baseline run to compare against: run the train phase first")
    return runs


def _seconds(paths: list[Path]) -> float:
    found = [json.loads((p / "benchmark_timing.json").read_text())["seconds"] for p in paths
             if (p / "benchmark_timing.json").exists()]
    return sum(found) / len(found) if found else float("nan")


def _cell(row: pd.Series, points: bool) -> tuple[str, str]:
    scale, unit = (100.0, " pts") if points else (1.0, "")
    value = f"{row.value:.3f}" + (f" (sd {row.seed_std:.3f})" if row.n_runs > 1 else "")
    if row.method == row.reference or pd.isna(row.difference):
        return value, ""
    diff = (f"{row.difference * scale:+.1f} [{row.ci_low * scale:+.1f}, {row.ci_high * scale:+.1f}]{unit}"
            if points else f"{row.difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
    verdict = "**significant**" if row.significant else "n.s."
    noise = ", within seed noise" if row.within_seed_noise else ""
    return value, f"{diff}, p={row.p_value:.3g} (Holm {row.p_holm:.3g}) {verdict}{noise}"


def markdown(table: pd.DataFrame, runs: dict[str, list[Path]], args, wall: str) -> str:
    lines = [f"# {args.title} on UTKFace (gender), paired against the baseline", "", setting_text(args), "", wall, ""]
    header = ["method", "seeds", "group labels", "train min"]
    for name in FIGURES:
        header += [name, f"diff vs baseline ({name})"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, paths in runs.items():
        cells = [method, " ".join(p.name for p in paths), "yes" if METHODS[method][1] else "no",
                 f"{_seconds(paths) / 60:.1f}"]
        for attribute, metric in FIGURES.values():
            match = table[(table.method == method) & (table.task == "gender") & (table.attribute == attribute)
                          & (table.metric == metric)]
            cells += list(_cell(match.iloc[0], points=metric != "degree_of_bias" and "difference" not in metric)
                          if len(match) else ("n/a", ""))
        lines.append("| " + " | ".join(cells) + " |")
    pareto = table[(table.task == "gender") & (table.attribute == "race:gender") & (table.metric == "degree_of_bias")]
    lines += ["", "Pareto (paired: a method is dominated only when another is significantly better on one axis and "
              "not significantly worse on the other; significant: Holm-adjusted p < 0.05 over every pairwise test of both "
              "axes):", ""]
    lines += [f"- {r.method}: {r.pareto}" for r in pareto.itertuples()]
    verdicts = table[(table.task == "gender") & (table.method != "baseline") & table.verdict.astype(bool)
                     & table.apply(lambda r: (r.attribute, r.metric) in FIGURES.values(), axis=1)]
    lines += ["", "In words (every figure above; Holm over all compared metrics and gaps):", ""]
    lines += [f"- {r.verdict}" for r in verdicts.itertuples()]
    lines += ["", "Values are the mean over seeds (sd: seed-to-seed standard deviation). Differences: the seed-averaged "
              f"method minus the seed-averaged baseline, 95% paired bootstrap CI ({args.bootstrap} resamples of the "
              "same test rows for every run); p: exact McNemar on the discordant rows when each side has one run, "
              "else the paired bootstrap; Holm-corrected over every compared metric and gap of every method. "
              f"Gaps are over groups with >= {args.min_group_size} test rows (`facefair.audit`'s definitions). "
              "`train min`: wall time per run on a shared 2-core machine (other jobs ran at the same time, so "
              "times are inflated and only roughly comparable); thresholds: the baseline's plus fitting. "
              f"Full table: {args.name}/compare.csv (its page, compare.html, is written beside it and not tracked).", ""]
    return "\n".join(lines)


def _subset(paths: list[Path], listed: pd.Series, root, name: str) -> list[Path]:
    """Each run's test predictions restricted to the images ``listed`` (split-file paths)."""
    from facefair.data.splits import match_paths
    out = []
    for path in paths:
        frame = pd.read_csv(path / "predictions.csv")
        target = path / "subsets" / f"{name}.csv"
        target.parent.mkdir(exist_ok=True)
        frame[match_paths(frame["path"], listed.reset_index(drop=True), root).to_numpy() >= 0].to_csv(target, index=False)
        out.append(target)
    return out


def data_quality_checks(args, runs: dict[str, list[Path]], config) -> list[str]:
    """The two questions the data-quality variants are for, each its own small Holm family:
    do *these* rows matter (clean-labels against its random-drop control, not only against the
    baseline), and were the test figures inflated by copies in train (baseline against dedup on
    the test rows that have a copy in train, and on the rest)."""
    from facefair.audit.compare import compare_runs
    lines = []
    figures = [("overall", "accuracy"), ("race:gender", "worst_group_accuracy"), ("race:gender", "degree_of_bias")]

    def rows(table, method):
        for attribute, metric in figures:
            match = table[(table.method == method) & (table.attribute == attribute) & (table.metric == metric)]
            if len(match):
                r = match.iloc[0]
                lines.append(f"  - {attribute} {metric}: {r.value:.3f} vs {r.reference_value:.3f}, "
                             f"{100 * r.difference:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] points, "
                             f"p={r.p_value:.2g} (Holm {r.p_holm:.2g})")

    if "clean-labels" in runs and "random-drop" in runs:
        table = compare_runs({"random-drop": [p / "predictions.csv" for p in runs["random-drop"]],
                              "clean-labels": [p / "predictions.csv" for p in runs["clean-labels"]]}, config,
                             reference="random-drop")
        lines += ["- clean-labels against its control random-drop (the same number of train rows, drawn at random):"]
        rows(table, "clean-labels")
    if "dedup" in runs:
        from facefair.data.exclusions import copies_across
        splits = pd.read_csv(base_splits(args))
        leaked = copies_across(splits["path"], splits["split"], args.duplicates, _root(args), side="test",
                               others=("train",))
        test = (splits["split"] == "test").to_numpy()
        for name, rows in (("test rows with a copy in train", leaked), ("other test rows", test & ~leaked)):
            keys = splits.loc[rows, "path"]
            entries = {"baseline": _subset(runs["baseline"], keys, _root(args), name.replace(" ", "_")),
                       "dedup": _subset(runs["dedup"], keys, _root(args), name.replace(" ", "_"))}
            small = type(config)(attributes=(), intersections=(), tasks=("gender",), n_boot=config.n_boot, seed=0)
            table = compare_runs(entries, small, reference="baseline")
            r = table[(table.method == "dedup") & (table.attribute == "overall") & (table.metric == "accuracy")].iloc[0]
            lines.append(f"- dedup against baseline on the {len(keys)} {name}: gender accuracy {r.value:.3f} vs "
                         f"{r.reference_value:.3f}, {100 * r.difference:+.1f} [{100 * r.ci_low:+.1f}, "
                         f"{100 * r.ci_high:+.1f}] points, p={r.p_value:.2g}")
    return lines


def analyse(args) -> None:
    from facefair.audit import AuditConfig
    from facefair.audit.compare import compare_runs, write_comparison
    started = time.perf_counter()
    runs = finished_runs(args)
    config = AuditConfig(attributes=("race",), intersections=(tuple(GROUPS),), tasks=("gender",),
                         n_boot=args.bootstrap, seed=0, min_group_size=args.min_group_size)
    table = compare_runs({m: [p / "predictions.csv" for p in paths] for m, paths in runs.items()}, config,
                         reference="baseline")
    results = Path(args.results)
    write_comparison(table, results / args.name, config)
    wall = f"Analysis wall time {time.perf_counter() - started:.0f} s."
    text = markdown(table, runs, args, wall)
    checks = data_quality_checks(args, runs, config)
    if checks:
        text += "\n".join(["## Data-quality checks (each comparison its own Holm family)", ""] + checks + [""])
    (results / f"{args.name}.md").write_text(text)
    keep = table[(table.task == "gender") & table.apply(lambda r: (r.attribute, r.metric) in FIGURES.values(), axis=1)]
    keep.to_csv(results / f"{args.name}.csv", index=False)
    print(text)
    print(f"written {results / args.name}.md, {results / args.name}.csv, {results / args.name}/compare.*")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "analyse", "all"])
    parser.add_argument("--data", default="../shared/data/utkface/UTKFace")
    parser.add_argument("--splits", default="runs/bench-split/splits.csv",
                        help="the split every run uses (the recipe's seed-0 split)")
    parser.add_argument("--label-issues", default="runs/quality-utkface/label_issues.csv",
                        help="facefair clean --labels output (clean-labels variant)")
    parser.add_argument("--duplicates", default="runs/quality-utkface/duplicates.csv",
                        help="facefair clean --duplicates output (dedup variant)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fineface-seeds", nargs="+", type=int, default=[0],
                        help="FineFACE costs ~5x a baseline run: fewer seeds")
    parser.add_argument("--out-dir", default="runs/mitigation", help="run folders: OUT/METHOD/sSEED")
    parser.add_argument("--results", default="benchmarks/results", help="folder for NAME.{csv,md} and NAME/compare.*")
    parser.add_argument("--name", default="mitigation",
                        help="results file stem: a separate comparison (e.g. the data-quality variants alone) "
                             "keeps its own Holm family and does not overwrite the mitigation table")
    parser.add_argument("--title", default="Bias mitigation", help="heading of NAME.md")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--weights", default="local:mobilenet_v2", help="local backbone weights ('' for none)")
    parser.add_argument("--size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tasks", nargs="+", default=["gender"],
                        help="tasks every method trains (default gender: the table is about gender)")
    parser.add_argument("--downweight-factor", type=float, default=0.3, help="downweight variant's label weight")
    parser.add_argument("--adversary-weight", type=float, default=0.3)
    parser.add_argument("--expert-width", type=int, default=256, help="FineFACE expert width (paper: 1024)")
    parser.add_argument("--limit", type=int, help="seeded subset of the images (smoke runs)")
    parser.add_argument("--train-limit", type=int, default=6000,
                        help="train on a stratified subset of this many train rows (0: all); val/test stay whole")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--min-group-size", type=int, default=30)
    parser.add_argument("--cache-dir", default=".facefair-cache")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                        help="bfloat16 autocast on the CPU (only where it has native bf16; same for every method)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="mirror TTA at evaluation (off: halves evaluation time; same for every run)")
    args = parser.parse_args(argv)
    if args.phase in ("train", "all"):
        train_all(args)
    if args.phase in ("analyse", "all"):
        analyse(args)


if __name__ == "__main__":
    main()
