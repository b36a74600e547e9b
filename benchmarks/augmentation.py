"""What does augmentation for capture and quality changes buy?  Paired, over seeds, clean and corrupted.

Two training recipes that differ only in augmentation, trained on the same split for several seeds:

- ``recipe``: the CPU recipe's augmentation (zoom 0.85-1.05, shift, rotation, flip, brightness/contrast);
- ``quality``: the same plus a wider zoom (0.75-1.1: the detector/padding range) and saturation,
  grayscale, blur, low-resolution and JPEG changes (``facefair.data.augment_config``);
- ``quality-dro`` (``--variants recipe quality quality-dro``): ``quality`` plus Group DRO on the gender
  loss over age group x gender (``facefair train --method group_dro``), aimed at children's gender;
- ``quality-wide``: ``quality`` plus 30% wide frames (``--augment-zoom-out 0.3``, zoom 1.2-2.4), aimed
  at faces framed with more margin than the chips (``--reframe``'s padding 1.25);
- ``quality-144``: ``quality`` at 144 px instead of the recipe's size, for as many epochs as keep the
  pixels seen (the compute) the same: ``--epochs`` x (recipe size / 144)^2, rounded (11 -> 7). Aimed at
  children's gender, which the other levers leave near 0.75.

Every run is then audited by ``facefair robustness`` on the same stratified test faces under
the same seeded corruptions, and ``quality`` is compared with ``recipe`` *paired*: on clean faces
and under every corruption x severity, paired bootstrap CIs and McNemar (Holm-corrected), via
``facefair audit --compare``'s machinery.

    .venv/bin/python benchmarks/augmentation.py train      # resumable: skips finished runs
    .venv/bin/python benchmarks/augmentation.py analyse    # -> benchmarks/results/augmentation.{md,csv.gz}
    .venv/bin/python benchmarks/augmentation.py archive --archive DIR   # runs without weights (run_archive.py)
    .venv/bin/python benchmarks/augmentation.py restore --archive DIR   # ... back into --out-dir, to pool seeds

``--config configs/utkface-cpu.yaml`` starts both variants from the CPU recipe's own settings
(input size, regularisation, age head) instead of this script's lever-test defaults; ``--epochs``,
the split and the augmentation variant are the only changes, so ``recipe`` is today's recipe at
that budget.  The analysis then also compares the recipe's group figures (gender of children
0-9, race recall of Others, age MAE of 70+) paired, on those test rows, and every run's target
figures (``benchmarks/accuracy.py``'s definitions).

``--adjust race`` adds, for every variant, the same runs with ``facefair mitigate logit-adjust``'s
class-prior adjustment of that task (``tau`` chosen on each run's own val predictions), applied to
the clean test predictions and to every corruption's: ``VARIANT+adjusted`` in the tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from mitigation import base_splits  # noqa: E402 - the same stratified train cut as the mitigation benchmark

QUALITY = {"scale": (0.75, 1.1), "saturation": 0.3, "grayscale": 0.1, "blur": 0.25, "low_resolution": 0.25,
           "jpeg": 0.3}
#: variant -> (augmentation settings, training settings) changed from the recipe's
VARIANTS = {"recipe": ({}, {}), "quality": (QUALITY, {}),
            # Group DRO on the gender loss over age group x gender: children 0-9 are its worst groups
            "quality-dro": (QUALITY, {"method": "group_dro", "group_by": ["age_group", "gender"],
                                      "method_options": {"task": "gender"}}),
            # quality plus wide frames (padding up to 1.25), which tight-chip models call all male
            "quality-wide": ({**QUALITY, "zoom_out": 0.3}, {}),
            # ... with a third of the step, so the weights cannot pile onto the babies as fast
            "quality-dro-mild": (QUALITY, {"method": "group_dro", "group_by": ["age_group", "gender"],
                                           "method_options": {"task": "gender", "step_size": 0.003}}),
            # quality with more pixels per face and fewer epochs, at the same compute (MODEL_CHANGES)
            "quality-144": (QUALITY, {})}
#: variant -> model settings changed from the recipe's; a larger ``image_size`` also cuts the epochs
#: so that every variant sees the same number of pixels (budget_epochs)
MODEL_CHANGES = {"quality-144": {"image_size": 144}}
CORRUPTIONS = ("gaussian_blur", "gaussian_noise", "jpeg_compression", "low_resolution", "contrast", "darkness")
#: ``--reframe``: the same faces re-detected and re-aligned (facefair align) at FairFace's two paddings
REFRAME_DETECTORS, REFRAME_PADDINGS = ("dlib-hog", "mtcnn"), (0.25, 1.25)
#: ... kept apart from the corruption audit, in this folder of each run
REFRAME_AUDIT = "robustness-reframe"
TASKS = ("gender", "race", "age_group")


def run_dir(args, variant: str, seed: int) -> Path:
    return Path(args.out_dir) / variant / f"s{seed}"


def budget_epochs(epochs: int, recipe_size: int, size: int) -> int:
    """The epochs at input ``size`` that cost what ``epochs`` cost at ``recipe_size``: the backbone's
    and the augmentation's work grow with the pixel count."""
    return max(1, round(epochs * (recipe_size / size) ** 2))


def run_config(args, variant: str, seed: int):
    from facefair.config import AugmentConfig, DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    if args.config:
        return recipe_run_config(args, variant, seed)
    model = {"image_size": args.size, **MODEL_CHANGES.get(variant, {})}
    return RunConfig(
        data=DataConfig(data=args.data, splits_file=base_splits(args), cache_dir=args.cache_dir),
        model=ModelConfig(backbone=args.backbone, weights=args.weights or None, tasks=[*TASKS, "age"], **model),
        train=TrainConfig(out_dir=str(run_dir(args, variant, seed)),
                          epochs=budget_epochs(args.epochs, args.size, model["image_size"]), batch_size=args.batch_size,
                          lr=args.lr, warmup_epochs=args.warmup_epochs, seed=seed, progress=False,
                          tensorboard=False, tta=False, framing_sample=0,
                          results_csv=str(Path(args.out_dir) / "benchmark_results.csv"), **VARIANTS[variant][1]),
        augment=AugmentConfig(**VARIANTS[variant][0]))


def recipe_run_config(args, variant: str, seed: int):
    """The recipe file's config with only the budget, split, run folder and augmentation changed."""
    import dataclasses

    from facefair.config import load_yaml_config
    config = load_yaml_config(args.config)
    config.data = dataclasses.replace(config.data, data=args.data, splits_file=base_splits(args),
                                      cache_dir=args.cache_dir)
    recipe_size = config.model.resolved_size()  # a recipe may leave image_size 0: the backbone's default
    config.model = dataclasses.replace(config.model, **MODEL_CHANGES.get(variant, {}))
    epochs = budget_epochs(args.epochs, recipe_size, config.model.resolved_size())
    config.train = dataclasses.replace(
        config.train, out_dir=str(run_dir(args, variant, seed)), epochs=epochs, seed=seed, progress=False,
        tensorboard=False, framing_sample=0, results_csv=str(Path(args.out_dir) / "benchmark_results.csv"),
        # The recipe's warm-up, unless it would fill the whole shortened run (then --warmup-epochs).
        warmup_epochs=config.train.warmup_epochs if config.train.warmup_epochs < epochs else args.warmup_epochs,
        **VARIANTS[variant][1])
    config.augment = dataclasses.replace(config.augment, **VARIANTS[variant][0])
    config.check()
    return config


def load_recipe_epochs(path) -> int:
    from facefair.config import load_yaml_config
    return load_yaml_config(path).train.epochs


def robustness_config(args):
    from facefair.robustness import RobustnessConfig
    return RobustnessConfig(corruptions=CORRUPTIONS, severities=tuple(args.severities), limit=args.robust_limit,
                            n_boot=200, seed=0, tta=False, tasks=TASKS)


def reframe_config(args):
    """The corruption audit's faces and settings, re-framing only (kept apart: RUN/REFRAME_AUDIT);
    every run is audited on the same faces, so each detector runs once (OUT_DIR/detections)."""
    from dataclasses import replace
    from facefair.robustness import ReframeConfig
    from facefair.robustness.config import REFRAME
    return replace(robustness_config(args), corruptions=(REFRAME,),
                   reframe=ReframeConfig(detectors=REFRAME_DETECTORS, paddings=REFRAME_PADDINGS,
                                         cache_dir=str(Path(args.out_dir) / "detections")))


def train_all(args) -> None:
    from facefair.robustness import run_robustness
    from facefair.train.loop import train
    started = time.perf_counter()
    for seed in args.seeds:
        for variant in args.variants:
            out = run_dir(args, variant, seed)
            t0 = time.perf_counter()
            if not (out / "predictions.csv").exists():
                print(f"== {variant} s{seed}: training", flush=True)
                train(run_config(args, variant, seed))
            if not (out / "robustness" / "robustness.csv").exists():
                print(f"== {variant} s{seed}: robustness audit", flush=True)
                run_robustness(out, out / "robustness", robustness_config(args), progress=False)
            if args.reframe and not (out / REFRAME_AUDIT / "robustness.csv").exists():
                print(f"== {variant} s{seed}: re-framing audit", flush=True)
                run_robustness(out, out / REFRAME_AUDIT, reframe_config(args), progress=False)
            print(f"   {variant} s{seed}: {(time.perf_counter() - t0) / 60:.1f} min "
                  f"(elapsed {(time.perf_counter() - started) / 60:.1f})", flush=True)


#: clean-test subsets compared with the audit's overall figures on their rows: name -> (rows, task, metric)
SUBSETS = {
    "all test rows": (lambda f: f.index == f.index, "age", "mae"),
    "children 0-9": (lambda f: f["age_group"].isin(["0-2", "3-9"]), "gender", "accuracy"),
    "race Others": (lambda f: f["race"] == "Others", "race", "accuracy"),
    "age 70+": (lambda f: f["age_group"] == "70+", "age", "mae"),
}


def write_subsets(frame: pd.DataFrame, run: Path) -> dict[str, Path]:
    """Each SUBSETS row set of a run's clean test predictions as RUN/subsets/NAME.csv (spaces as
    underscores: the names subset_compare.py's checks use); returns subset name -> file."""
    (run / "subsets").mkdir(exist_ok=True)
    files = {}
    for name, (select, _, _) in SUBSETS.items():
        files[name] = run / "subsets" / f"{name.replace(' ', '_')}.csv"
        frame[select(frame)].to_csv(files[name], index=False)
    return files


def compare_subset(entries: dict[str, list[Path]], task: str, metric: str, n_boot: int,
                   reference: str) -> pd.DataFrame:
    """Paired comparison of row-subset predictions (method -> CSVs) on ``task``: the rows of every
    method's overall ``metric``."""
    from facefair.audit import AuditConfig
    from facefair.audit.compare import compare_runs
    config = AuditConfig(attributes=(), intersections=(), tasks=(task,), n_boot=n_boot, seed=0)
    table = compare_runs(entries, config, reference=reference)
    return table[(table.attribute == "overall") & (table.metric == metric)]


def subset_table(args) -> pd.DataFrame:
    """Each SUBSETS row set of every run's clean test predictions, compared paired with the reference:
    recall of a class and accuracy of an age band are the overall figures of those rows."""
    files: dict[str, dict[str, list[Path]]] = {name: {} for name in SUBSETS}  # subset -> method -> CSVs
    for method in methods(args):
        for seed in args.seeds:
            source = predictions_of(args, method, seed, None)
            if not source.exists():
                continue
            for name, out in write_subsets(pd.read_csv(source), source.parent).items():
                files[name].setdefault(method, []).append(out)
    rows = []
    for name, (_, task, metric) in SUBSETS.items():
        entries = files[name]
        if len(entries) < len(methods(args)):
            continue
        rows.append(compare_subset(entries, task, metric, args.bootstrap, args.reference)
                    .assign(condition=f"clean: {name}"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


ADJUSTED = "+adjusted"


def methods(args) -> list[str]:
    return [*args.variants, *(f"{v}{ADJUSTED}" for v in args.variants if args.adjust)]


def predictions_of(args, method: str, seed: int, condition: str) -> Path:
    """One run's predictions CSV under ``condition`` (robustness faces), or its clean test split (None)."""
    variant, adjusted = method.removesuffix(ADJUSTED), method.endswith(ADJUSTED)
    run = run_dir(args, variant, seed)
    tag = adjust_tag(args)
    if condition is None:
        return run / (f"logit-adjusted{tag}" if adjusted else "") / "predictions.csv"
    audit = REFRAME_AUDIT if condition.startswith("reframe-") else "robustness"
    return run / audit / (f"predictions-adjusted{tag}" if adjusted else "predictions") / f"{condition}.csv"


def adjust_tag(args) -> str:
    """Folder-name suffix of an adjustment with an accuracy bound (each bound keeps its own files)."""
    return "" if args.adjust_max_drop is None else f"-drop{args.adjust_max_drop:g}"


def adjust_runs(args) -> None:
    """Fit the class-prior adjustment on each finished run's val predictions, apply it to its test
    predictions and to every robustness condition's (rules fitted once; files written once)."""
    from facefair.mitigate.logit_adjust import LogitAdjustment, apply_logit_adjustment, logit_adjust_run
    for variant in args.variants:
        for seed in args.seeds:
            run = run_dir(args, variant, seed)
            if not (run / "robustness" / "robustness.csv").exists():
                continue
            rule = run / f"logit-adjusted{adjust_tag(args)}" / "adjustment.json"
            if not rule.exists():
                summary = logit_adjust_run(run, task=args.adjust, objective=args.adjust_objective,
                                           max_accuracy_drop=args.adjust_max_drop, out_dir=rule.parent)
                print(f"   {variant} s{seed}: {args.adjust} tau {summary['tau']:g}", flush=True)
            adjustment = LogitAdjustment.from_json(rule.read_text())
            for condition in conditions(args):
                out, source = (predictions_of(args, m, seed, condition) for m in (f"{variant}{ADJUSTED}", variant))
                if source.exists() and not out.exists():  # a run may lack the re-framing audit
                    out.parent.mkdir(exist_ok=True)
                    frame = pd.read_csv(source)
                    apply_logit_adjustment(frame, adjustment).to_csv(out, index=False)


def target_table(args) -> pd.DataFrame:
    """benchmarks/accuracy.py's target figures of every run's clean test predictions."""
    from accuracy import GROUP_TARGETS, group_figures
    rows = []
    for method in methods(args):
        for seed in args.seeds:
            source = predictions_of(args, method, seed, None)
            if source.exists():
                frame = pd.read_csv(source)
                figures = group_figures(source)
                overall = {f"{t}_accuracy": float((frame[f"{t}_pred"] == frame[f"{t}_true"])[frame[f"{t}_true"].notna()]
                                                  .mean()) for t in TASKS}
                overall["age_mae"] = float((frame["age_pred"] - frame["age_true"]).abs().mean())
                rows.append({"method": method, "seed": seed, **overall,
                             **{k: figures[k] for k in GROUP_TARGETS}})
    return pd.DataFrame(rows)


def conditions(args) -> list[str]:
    reframed = [f"reframe-{d}-{p:g}" for d in REFRAME_DETECTORS for p in REFRAME_PADDINGS] if args.reframe else []
    return ["clean", *(f"{c}-{s}" for c in CORRUPTIONS for s in args.severities), *reframed]


def analyse(args) -> None:
    from facefair.audit import AuditConfig
    from facefair.audit.compare import compare_runs
    started = time.perf_counter()
    config = AuditConfig(attributes=("race",), intersections=(("race", "gender"),), tasks=TASKS, n_boot=args.bootstrap,
                         seed=0, min_group_size=30)
    if args.adjust:
        adjust_runs(args)
    rows = []
    for condition in conditions(args):
        entries = {m: [predictions_of(args, m, s, condition) for s in args.seeds] for m in methods(args)}
        entries = {v: [p for p in paths if p.exists()] for v, paths in entries.items()}
        if not all(entries.values()):
            print(f"   {condition}: runs missing, skipped", flush=True)
            continue
        table = compare_runs(entries, config, reference=args.reference)
        rows.append(table.assign(condition=condition))
    if not rows:
        raise SystemExit("no finished runs: run the train phase first")
    if args.config:
        rows.append(subset_table(args))
    table = pd.concat(rows, ignore_index=True)
    # Holm over every comparison of the whole benchmark, not per condition.
    from statsmodels.stats.multitest import multipletests
    tested = table["p_value"].notna()
    table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p_value"], method="holm")[1]
    table["significant"] = table["p_holm"] < 0.05
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    keep = table[table.metric.isin(["accuracy", "worst_group_accuracy", "degree_of_bias", "mae"])
                 & table.attribute.isin(["overall", "race", "race:gender"])]
    # gzipped without a timestamp: the paired table runs to hundreds of KiB (benchmarks/README.md)
    keep.to_csv(results / f"{args.name}.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    # Every run's own robustness table (per group, with its bootstrap CIs), side by side.
    per_run = []
    for v in args.variants:
        for seed in args.seeds:
            for audit in ["robustness", *([REFRAME_AUDIT] if args.reframe else [])]:
                source = run_dir(args, v, seed) / audit / "robustness.csv"
                if source.exists():
                    table_of_run = pd.read_csv(source).assign(variant=v, seed=seed)
                    # the re-framing audit repeats the clean rows the corruption audit already has
                    per_run.append(table_of_run if audit == "robustness" else
                                   table_of_run[table_of_run.corruption != "clean"])
    if per_run:
        pd.concat(per_run, ignore_index=True).to_csv(results / f"robustness-{args.name}.csv", index=False)
    targets = target_table(args) if args.config else pd.DataFrame()
    if args.prior_targets and len(targets):
        # Per-run figures of seeds trained (and analysed) in an earlier session, whose run folders are
        # gone: they join the means and ranges of the target table, not the paired tables.
        prior = pd.read_csv(args.prior_targets).assign(source=args.prior_targets)
        prior = prior[prior.method.isin(targets.method)
                      & ~prior.set_index(["method", "seed"]).index.isin(targets.set_index(["method", "seed"]).index)]
        targets = pd.concat([prior, targets.assign(source="this analysis")], ignore_index=True)
    if len(targets):
        targets.to_csv(results / f"{args.name}-targets.csv", index=False)
    from augmentation_report import markdown
    text = markdown(sys.modules[__name__], keep, targets, args, time.perf_counter() - started)
    (results / f"{args.name}.md").write_text(text)
    print(text)


def archive(args) -> None:
    """Every finished run of --variants/--seeds into --archive, without weights (after `analyse`,
    which adds the val predictions the adjustment is fitted on)."""
    from run_archive import archive_run
    for variant in args.variants:
        for seed in args.seeds:
            run = run_dir(args, variant, seed)
            if (run / "predictions.csv").exists():
                size = archive_run(run, Path(args.archive) / variant / f"s{seed}")
                print(f"   {variant} s{seed}: {size / 2**20:.1f} MiB", flush=True)


def restore(args) -> None:
    from run_archive import restore_run
    for run in sorted(Path(args.archive).glob("*/s*")):
        print(f"   {run.parent.name} {run.name}: {restore_run(run, Path(args.out_dir) / run.parent.name / run.name)} "
              f"files", flush=True)


def shown_methods(args, task: str) -> list[str]:
    """The methods whose predictions differ for ``task`` (an adjustment changes only its own task)."""
    return [m for m in methods(args) if not m.endswith(ADJUSTED) or task == args.adjust]



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "analyse", "archive", "restore"])
    parser.add_argument("--data", default="../shared/data/utkface/UTKFace")
    parser.add_argument("--splits", default="runs/bench-split/splits.csv", help="the recipe's seed-0 split")
    parser.add_argument("--train-limit", type=int, default=6000, help="stratified train rows (0: all)")
    parser.add_argument("--out-dir", default="runs/augmentation")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=["recipe", "quality"], choices=list(VARIANTS),
                        help="what to train and compare (the --reference is always included)")
    parser.add_argument("--reference", default="recipe", choices=list(VARIANTS),
                        help="the variant every other one is compared with, paired")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--weights", default="local:mobilenet_v2")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--severities", nargs="+", type=int, default=[3, 5])
    parser.add_argument("--robust-limit", type=int, default=1500, help="stratified test faces for the robustness audit")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--reframe", action="store_true",
                        help=f"train: also audit every run re-framed ({', '.join(REFRAME_DETECTORS)} at paddings "
                        f"{' '.join(map(str, REFRAME_PADDINGS))}); analyse: compare those conditions too")
    parser.add_argument("--cache-dir", default=".facefair-cache")
    parser.add_argument("--config", help="start from this recipe file (e.g. configs/utkface-cpu.yaml): its size, "
                        "regularisation and heads; --size/--lr/--backbone are then unused")
    parser.add_argument("--name", default="augmentation", help="results file stem in --results")
    parser.add_argument("--adjust", help="analyse: also compare every variant with this task's class-prior "
                        "adjustment (facefair mitigate logit-adjust), e.g. race")
    parser.add_argument("--adjust-max-drop", type=float, help="the adjustment's bound on val accuracy loss "
                        "(logit-adjust --max-accuracy-drop; a fraction)")
    parser.add_argument("--prior-targets", help="analyse: a NAME-targets.csv of earlier seeds (runs no longer "
                        "here) whose per-run figures join the target table")
    parser.add_argument("--archive", help="archive/restore: folder of the runs kept without weights")
    parser.add_argument("--adjust-objective", default="balanced_accuracy",
                        help="what the adjustment's tau maximises on each run's val predictions")
    args = parser.parse_args(argv)
    args.variants = [args.reference, *(v for v in args.variants if v != args.reference)]
    {"train": train_all, "analyse": analyse, "archive": archive, "restore": restore}[args.phase](args)


if __name__ == "__main__":
    main()
