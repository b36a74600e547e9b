"""Transfer levers, paired on the same faces over seeds: the robust CNN recipe against other CNN
recipes and against the CNN blended with face heads (docs/transfer.md), on the runs' shared test
split and on another dataset.

Every run is a finished training run evaluated on the other dataset (``RUN/eval-NAME/``); seeds
share one split (``train --splits-file``), so every method is scored on the same faces.  Face-head
blends are built per seed from the reference run's CNN table and a copy of that run with face
heads at weight 1 (``facefair face-heads COPY --weights gender=1 race=1``):
``w x face head + (1 - w) x CNN`` per task, exactly what a run with those weights outputs.
Comparisons: :func:`facefair.audit.compare.compare_runs` (McNemar, paired bootstrap over the
same rows and seeds, Holm over every comparison of a table).

    python benchmarks/transfer_levers.py --other mebeauty-dev \\
        --reference robust=runs/robust-s0,runs/robust-s1,runs/robust-s2 \\
        --method capture=runs/capture-s0 \\
        --face-heads runs/robust-s0-face,runs/robust-s1-face,runs/robust-s2-face \\
        --blend hybrid=gender:0.5,race:1 --blend face=gender:1,race:1 \\
        --out benchmarks/results/transfer_levers.md

A method may be test-time BatchNorm adaptation of finished runs (``--adapted
adabn=runs/robust-s0,...``: their ``facefair evaluate --adapt-bn`` tables of both sets).  A blend
may sit on another method's CNN (``--blend capture+heads=gender:0.5,race:1@capture``) and any
method or blend can be the one the others are paired with (``--against hybrid``): a lever on top of
the current recipe.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_embedding import markdown_table, recall_table  # noqa: E402  (the benchmarks' shared tables)

TARGET_RACES = ("Asian", "Black", "Indian", "White")


def _runs(spec: str) -> tuple[str, list[Path]]:
    name, sep, runs = spec.partition("=")
    if not sep or not runs:
        raise SystemExit(f"{spec!r}: expected NAME=RUN[,RUN...]")
    return name, [Path(r) for r in runs.split(",")]


def _weights(spec: str) -> tuple[str, tuple[dict[str, float], str]]:
    """NAME=TASK:W[,TASK:W...][@METHOD] -> (NAME, (weights, METHOD or "" for the reference))."""
    name, sep, pairs = spec.partition("=")
    pairs, _, on = pairs.partition("@")
    weights = {}
    for pair in pairs.split(","):
        task, _, value = pair.partition(":")
        weights[task] = float(value)
    if not sep or not weights:
        raise SystemExit(f"{spec!r}: expected NAME=TASK:WEIGHT[,TASK:WEIGHT...][@METHOD]")
    return name, (weights, on)


def table_of(run: Path, side: str, other: str, adapt_bn: bool = False) -> Path:
    """The run's predictions of its test split or of ``other``; ``adapt_bn``: those of
    ``facefair evaluate --adapt-bn`` (the CNN's BatchNorm statistics re-estimated on each set)."""
    from facefair.run import Run

    if side == "test":
        folder = Run(Run(run).eval_dir("test", adapt_bn=True)) if adapt_bn else Run(run)
    else:
        folder = Run(Run(run).eval_dir(other, adapt_bn=adapt_bn))
    if not folder.predictions_path.is_file():
        flag = " --adapt-bn" if adapt_bn else ""
        raise SystemExit(f"{folder.predictions_path} not found: train the run, then `facefair evaluate RUN{flag}` "
                         f"(its test split) and `facefair evaluate RUN --data OTHER{flag}`")
    return folder.predictions_path


def blend(cnn: pd.DataFrame, face: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """``weights[task] x face + (1 - weights[task]) x cnn`` per task (others: the CNN's)."""
    from facefair.evaluate.ensemble import average_predictions

    if not cnn["path"].equals(face["path"]):
        face = face.set_index("path").loc[cnn["path"]].reset_index()
    tasks = [c[: -len("_pred")] for c in cnn.columns if c.endswith("_pred")]
    return average_predictions([cnn, face], {t: [1 - weights.get(t, 0.0), weights.get(t, 0.0)] for t in tasks})


def _worst_cell(frame: pd.DataFrame) -> float:
    """Gender accuracy of the worst race x gender cell holding at least the audit's minimum group
    size (smaller cells are the audit's "too few to judge")."""
    from facefair.audit.config import AuditConfig

    cells = frame.assign(ok=frame["gender_pred"] == frame["gender_true"]).groupby(
        ["race_true", "gender_true"], observed=True)["ok"].agg(["mean", "size"])
    return float(cells.loc[cells["size"] >= AuditConfig().min_group_size, "mean"].min())


def targets_table(frames: dict[str, dict[str, list[pd.DataFrame]]], other: str) -> list[str]:
    """The issue's targets per method, mean over seeds: other-dataset gender, worst race x gender
    cell of gender (cells of at least the audit's minimum size), race-5, each target race's recall;
    in-distribution gender, race, MAE."""
    from sklearn.metrics import recall_score

    def mean(values):
        return sum(values) / len(values)

    out = [f"| method | {other} gender | worst race x gender (gender) | race | race, {len(TARGET_RACES)} named races "
           f"only | recall {' / '.join(TARGET_RACES)} | test gender | test race | test MAE |",
           "|---|---|---|---|---|---|---|---|---|"]
    for method in frames["test"]:
        dev, test = frames["other"][method], frames["test"][method]
        gender = mean([(f["gender_pred"] == f["gender_true"]).mean() for f in dev])
        worst = mean([_worst_cell(f) for f in dev])
        race = mean([(f["race_pred"] == f["race_true"]).mean() for f in dev])
        # The "Others" of another dataset need not be UTKFace's (MEBeauty's are its Hispanic and
        # Middle-Eastern faces): the four named races alone, as a second figure.
        named = mean([(f["race_pred"] == f["race_true"])[f["race_true"].isin(TARGET_RACES)].mean() for f in dev])
        recalls = [mean([recall_score(f["race_true"], f["race_pred"], labels=[r], average=None, zero_division=0)[0]
                         for f in dev]) for r in TARGET_RACES]
        t_gender = mean([(f["gender_pred"] == f["gender_true"]).mean() for f in test])
        t_race = mean([(f["race_pred"] == f["race_true"]).mean() for f in test])
        mae = mean([(f["age_pred"] - f["age_true"]).abs().mean() for f in test]) if "age_pred" in test[0] else float("nan")
        out.append(f"| {method} | {gender:.3f} | {worst:.3f} | {race:.3f} | {named:.3f} | "
                   f"{' / '.join(f'{r:.2f}' for r in recalls)} | {t_gender:.3f} | {t_race:.3f} | {mae:.2f} |")
    return out


def side_section(title: str, table: pd.DataFrame, frames: dict[str, list[pd.DataFrame]], reference: str) -> list[str]:
    """One side's section of the page: every method paired with ``reference``, then recalls."""
    return ["", f"## {title}", "", *[line.replace("| CNN |", f"| {reference} |") for line in markdown_table(table)],
            "", "Race recall:", "", *recall_table(frames, "race"), "", "Gender recall:", "", *recall_table(frames, "gender")]


def write_summary(lines: list[str], frames: dict[str, dict[str, list[pd.DataFrame]]], other: str, started: float,
                  out: str) -> int:
    """Add the targets table, write the page to ``out`` and print it."""
    lines = [*lines, "", "## The issue's targets (mean over seeds)", "", *targets_table(frames, other),
             "", f"Summary written in {time.perf_counter() - started:.0f} s."]
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    from facefair.audit.compare import compare_runs
    from facefair.audit.config import AuditConfig
    from facefair.audit.groups import load_predictions
    from facefair.evaluate.ensemble import average_predictions
    from facefair.run import Run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="NAME=RUN[,RUN...]: the recipe every lever is paired with")
    parser.add_argument("--method", action="append", default=[], help="NAME=RUN[,RUN...]: another CNN recipe")
    parser.add_argument("--adapted", action="append", default=[],
                        help="NAME=RUN[,RUN...]: runs evaluated with --adapt-bn on both sets (RUN/eval-test-adapt-bn, "
                             "RUN/eval-OTHER-adapt-bn): test-time BatchNorm adaptation as a method")
    parser.add_argument("--face-heads", help="RUN[,RUN...]: per reference seed, its copy with face heads at weight 1")
    parser.add_argument("--blend", action="append", default=[],
                        help="NAME=TASK:W[,TASK:W][@METHOD]: a face-head blend with the reference's CNN (or with "
                             "METHOD's, seed by seed: the heads depend only on the split and the seed)")
    parser.add_argument("--against", help="the method or blend every other is paired with (default: --reference)")
    parser.add_argument("--ensemble", action="store_true",
                        help="also the mean of the reference's seeds (and of each blend's): one model made of "
                             "every seed, paired with each reference seed")
    parser.add_argument("--external", action="append", default=[],
                        help="NAME=PREDICTIONS_CSV: another model's predictions of the other dataset (e.g. "
                             "`facefair third-party --split all`), each method paired with it on its tasks")
    parser.add_argument("--other", required=True, help="the other dataset's name (the runs' eval-NAME folders)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", required=True, help="markdown summary to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    reference, ref_runs = _runs(args.reference)
    adapted_methods = dict(_runs(m) for m in args.adapted)
    methods = {reference: ref_runs, **dict(_runs(m) for m in args.method), **adapted_methods}
    adapted = set(adapted_methods)
    face_runs = [Path(r) for r in args.face_heads.split(",")] if args.face_heads else []
    blends = dict(_weights(b) for b in args.blend)
    if blends and len(face_runs) != len(ref_runs):
        raise SystemExit(f"--face-heads needs one run per --reference seed ({len(ref_runs)}), got {len(face_runs)}")
    for name, (_, on) in blends.items():
        if on and len(methods.get(on, ())) != len(face_runs):
            raise SystemExit(f"--blend {name}: @{on} needs a --method with one run per --face-heads run")
    against = args.against or reference
    if against not in [*methods, *blends]:
        raise SystemExit(f"--against {against}: not a --reference, --method or --blend name")
    lines = [f"# Transfer levers: `{against}` against the others, paired on the same faces", "",
             "Seeds share one split; each method's seeds are paired with the reference's seeds in order. "
             f"Blends: `w x face head + (1 - w) x CNN` per task, from the CNN run (`{reference}` unless named) of "
             "the same seed.", "",
             "| method | seeds | training wall time per seed (s) |", "|---|---|---|"]
    for name, runs in methods.items():
        walls = [Run(r).report().get("run", {}).get("wall_seconds_this_session") for r in runs]
        lines.append(f"| {name} | {len(runs)} | {', '.join(str(w) for w in walls)} |")
    if args.ensemble:
        lines.append(f"| {reference} x{len(ref_runs)} (and each blend's) | - | the mean of every seed's "
                     f"probabilities: {len(ref_runs)}x the training and inference |")
    for name, (_, on) in blends.items():
        fits = [Run(r).report().get("face_heads", {}).get("fit_seconds") for r in face_runs]
        lines.append(f"| {name} | {len(face_runs)} | {on or reference}'s + face heads ({', '.join(map(str, fits))} s "
                     f"to describe and fit; descriptors cached) |")
    frames: dict[str, dict[str, list[pd.DataFrame]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side, title in (("test", "the runs' test split (in distribution)"), ("other", args.other)):
            entries = {name: [table_of(r, side, args.other, name in adapted) for r in runs]
                       for name, runs in methods.items()}
            for name, (weights, on) in blends.items():
                entries[name] = []
                for k, (ref, face) in enumerate(zip(methods[on or reference], face_runs)):
                    mixed = blend(load_predictions(table_of(ref, side, args.other, on in adapted))[0],
                                  load_predictions(table_of(face, side, args.other))[0], weights)
                    path = Path(tmp) / f"{name}-{side}-s{k}.csv"
                    mixed.to_csv(path, index=False)
                    entries[name].append(path)
            if args.ensemble and len(ref_runs) > 1:
                for name in [reference, *blends]:
                    members = [load_predictions(p)[0] for p in entries[name]]
                    path = Path(tmp) / f"{name}-ensemble-{side}.csv"
                    average_predictions(members).to_csv(path, index=False)
                    entries[f"{name} x{len(members)}"] = [path] * len(ref_runs)
            table = compare_runs(entries, AuditConfig(n_boot=args.n_boot, tasks=("gender", "race")),
                                 reference=against)
            frames[side] = {m: [load_predictions(p)[0] for p in paths] for m, paths in entries.items()}
            for external in args.external if side == "other" else ():
                name, _, csv = external.partition("=")
                theirs = load_predictions(Path(csv))[0]
                tasks = tuple(t for t in ("gender", "race") if f"{t}_pred" in theirs)
                paired = compare_runs({name: [Path(csv)] * len(ref_runs), **entries},
                                      AuditConfig(n_boot=args.n_boot, tasks=tasks), reference=name)
                lines += ["", f"Against `{name}` ({csv}) on the same faces, its tasks only ({', '.join(tasks)}):", "",
                          *[line.replace("| CNN |", f"| {name} |") for line in markdown_table(paired)]]
            lines += side_section(title, table, frames[side], against)
    return write_summary(lines, frames, args.other, started, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
