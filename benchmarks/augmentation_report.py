"""The markdown page of ``benchmarks/augmentation.py analyse``: target figures, per-task tables of
every condition, group figures.  ``bench`` is the augmentation module (its variants, conditions
and run layout), passed in so this file holds only the presentation."""

from __future__ import annotations

import json
import os
import platform

import pandas as pd


def _cell(row) -> str:
    if pd.isna(row.difference):
        return f"{row.value:.3f}"
    verdict = "**significant**" if row.significant else "n.s."
    return (f"{row.value:.3f} ({100 * row.difference:+.1f} [{100 * row.ci_low:+.1f}, {100 * row.ci_high:+.1f}] pts, "
            f"Holm p={row.p_holm:.2g} {verdict})")


def _mae_cell(row) -> str:
    if pd.isna(row.difference):
        return f"{row.value:.2f}"
    return (f"{row.value:.2f} ({row.difference:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}] years, "
            f"Holm p={row.p_holm:.2g} {'**significant**' if row.significant else 'n.s.'})")


def target_lines(targets: pd.DataFrame) -> list[str]:
    from accuracy import GROUP_TARGETS
    figures = ["gender_accuracy", "race_accuracy", "age_group_accuracy", "age_mae", *GROUP_TARGETS]
    seeds = {m: " ".join(str(s) for s in sorted(part.seed)) for m, part in targets.groupby("method", sort=False)}
    lines = ["## Target figures (clean test split; mean over seeds, [min, max])", "",
             "| figure | target | " + " | ".join(f"{m} (s {seeds[m]})" for m in targets.method.unique()) + " |",
             "|---|---|" + "---|" * targets.method.nunique()]
    for figure in figures:
        target, higher = GROUP_TARGETS.get(figure, (None, True))
        cells = []
        for _, part in targets.groupby("method", sort=False):
            values = part[figure].dropna()
            mean = values.mean()
            met = "" if target is None else (" met" if (mean >= target if higher else mean <= target) else "")
            cells.append(f"{mean:.3f} [{values.min():.3f}, {values.max():.3f}]{met}")
        goal = "" if target is None else f"{'>=' if higher else '<='} {target}"
        lines.append(f"| {figure} | {goal} | " + " | ".join(cells) + " |")
    if "source" in targets and (targets.source != "this analysis").any():
        earlier = targets[targets.source != "this analysis"]
        earlier_seeds = " ".join(sorted({str(s) for s in earlier.seed}))
        lines += ["", f"Seeds {earlier_seeds} of this table are per-run figures from "
                  f"{', '.join(sorted(set(earlier.source)))} (trained in an earlier session); the paired tables "
                  "below cover only this analysis's seeds."]
    return [*lines, ""]


def markdown(bench, table: pd.DataFrame, targets: pd.DataFrame, args, seconds: float) -> str:
    QUALITY, VARIANTS = bench.QUALITY, bench.VARIANTS
    ref_name = args.reference
    # only the runs this page compares (the out-dir may hold other variants and seeds)
    reports = [bench.run_dir(args, v, seed) / "report.json" for v in args.variants for seed in args.seeds]
    timings = [json.loads(p.read_text()) for p in reports if p.is_file()]
    minutes = [t["run"]["wall_seconds_this_session"] / 60 for t in timings if "run" in t]
    if args.config:
        recipe = bench.recipe_run_config(args, "recipe", args.seeds[0])
        epochs = bench.load_recipe_epochs(args.config)
        budget = "its own epochs" if epochs == args.epochs else f"{args.epochs} epoch(s) instead of {epochs}"
        model = (f"{args.config} ({recipe.model.backbone}, {recipe.model.image_size} px, label smoothing "
                 f"{recipe.train.label_smoothing}, flip-TTA on clean test rows {recipe.train.tta}) at {budget} "
                 f"(warm-up {recipe.train.warmup_epochs})")
    else:
        model = f"{args.backbone} ({args.weights}), {args.size} px, {args.epochs} epochs"
    train_rows = ("all train rows" if not args.train_limit
                  else f"train cut to a race x gender stratified {args.train_limit}")
    bound = "" if args.adjust_max_drop is None else f" --max-accuracy-drop {args.adjust_max_drop:g}"
    adjusted = (f" `+adjusted`: the same runs with `facefair mitigate logit-adjust --task {args.adjust} --objective "
                f"{args.adjust_objective}{bound}` (tau chosen on each run's val predictions; applied to the TTA-free "
                f"robustness predictions as fitted)." if args.adjust else "")
    def described(variant: str) -> str:
        augment, training = VARIANTS[variant]
        base = "quality" if all(augment.get(k) == v for k, v in QUALITY.items()) else "recipe"
        extra = {k: v for k, v in augment.items() if base == "recipe" or QUALITY.get(k) != v}
        model = bench.MODEL_CHANGES.get(variant, {})
        return " and ".join([base + (f" with {json.dumps(extra)}" if extra else "")]
                            + ([json.dumps(training)] if training else [])
                            + ([f"model {json.dumps(model)} for {bench.run_config(args, variant, args.seeds[0]).train.epochs}"
                                " epochs (the same pixels seen)"] if model else []))
    trained = "".join(f"; `{v}`: {described(v)}" for v in args.variants if v not in ("recipe", "quality"))
    reframed = (f", and re-framed (re-detected and re-aligned by facefair align) with {', '.join(bench.REFRAME_DETECTORS)}"
                f" at paddings {' '.join(map(str, bench.REFRAME_PADDINGS))}" if args.reframe else "")
    lines = [f"# Training variants vs {args.reference}, paired", "",
             f"Setting: {model}, tasks "
             f"{'+'.join(bench.TASKS)}+age, seeds {' '.join(map(str, args.seeds))}, the recipe's seed-0 split with "
             f"{train_rows} (every val/test row kept); `quality` adds "
             f"{json.dumps(QUALITY)} to the recipe's augmentation{trained}.{adjusted} Robustness: "
             f"{args.robust_limit} stratified test faces (the same for every run), corruptions "
             f"{', '.join(bench.CORRUPTIONS)} at severities "
             f"{' '.join(map(str, args.severities))}{reframed}. Machine: {os.cpu_count()} CPU cores "
             f"({platform.processor() or platform.machine()}); training {min(minutes):.1f}-{max(minutes):.1f} min "
             f"per run. Analysis {seconds:.0f} s.", ""]
    if len(targets):
        lines += target_lines(targets)
    for task in bench.TASKS:
        part = table[(table.task == task)]
        others = bench.shown_methods(args, task)[1:]
        lines += [f"## {task}", "", f"| condition | figure | {ref_name} | "
                  + " | ".join(f"{m} (diff vs {ref_name})" for m in others) + " |", "|---|---|---|" + "---|" * len(others)]
        for condition in bench.conditions(args):
            for (attribute, metric), label in {("overall", "accuracy"): "accuracy",
                                               ("race", "worst_group_accuracy"): "worst race accuracy",
                                               ("race:gender", "degree_of_bias"): "degree of bias (race x gender)"
                                               }.items():
                cell = part[(part.condition == condition) & (part.attribute == attribute) & (part.metric == metric)]
                if not set(others) <= set(cell.method) or ref_name not in set(cell.method):
                    continue
                ref = cell[cell.method == ref_name].iloc[0]
                lines.append(f"| {condition} | {label} | {ref.value:.3f} | "
                             + " | ".join(_cell(cell[cell.method == m].iloc[0]) for m in others) + " |")
        lines.append("")
    subsets = table[table.condition.str.startswith("clean: ")]
    if len(subsets):
        lines += ["## Group figures (clean test rows)", "",
                  f"| rows | task | figure | {ref_name} | others (diff vs {ref_name}) |", "|---|---|---|---|---|"]
        for name, (_, task, metric) in bench.SUBSETS.items():
            cell = subsets[subsets.condition == f"clean: {name}"]
            if ref_name not in set(cell.method):
                continue
            ref = cell[cell.method == ref_name].iloc[0]
            show = _mae_cell if metric == "mae" else _cell
            shown = "; ".join(f"{m}: {show(cell[cell.method == m].iloc[0])}"
                              for m in bench.shown_methods(args, task)[1:] if m in set(cell.method))
            lines.append(f"| {name} (n={int(ref.n_rows)}) | {task} | {metric} | {show(ref)} | {shown} |")
        lines.append("")
    lines += [f"Values: mean over seeds. Differences: minus {ref_name}, 95% paired bootstrap CI over the same "
              "faces, p from McNemar (one run a side) or the paired bootstrap; Holm over every comparison in "
              "this file.", ""]
    return "\n".join(lines)
