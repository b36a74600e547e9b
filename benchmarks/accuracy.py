"""Train the CPU recipe on UTKFace and write its test figures next to the issue's targets.

    .venv/bin/python benchmarks/accuracy.py --config configs/utkface-cpu-transfer.yaml
    .venv/bin/python benchmarks/accuracy.py --from-run runs/utkface-cpu --out OTHER.json  # score a finished run
    .venv/bin/python benchmarks/accuracy.py --from-run RUN --logit-adjust race  # after the class-prior adjustment

Writes benchmarks/results/accuracy.json (figures, targets, pass/fail, wall time, machine) and
leaves the run folder (report.json, predictions.csv for `facefair audit`) in place.  Besides the
overall figures it gives the group figures the fairness targets are about (worst-race gender
accuracy, race x gender degree of bias, Others race recall, gender of children 0-9, age MAE of
70+), each computed by `facefair audit`'s definitions on the run's test predictions; and, when
the run was evaluated on other datasets (`facefair evaluate RUN --data ...`), their overall and
per-group figures from `RUN/transfer/transfer.json`.
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

#: (metric in report["headline"], target, higher is better)
TARGETS = {
    "gender_accuracy": (0.92, True),
    "race_accuracy": (0.82, True),
    "age_mae": (5.5, False),
    "age_group_accuracy": (0.55, True),
}
#: group figures (key -> target, higher is better), from the audit of the test predictions
GROUP_TARGETS = {
    "gender_accuracy_worst_race": (0.92, True),
    "gender_degree_of_bias_race_x_gender_points": (2.0, False),
    "race_recall_Others": (0.50, True),
    "gender_accuracy_age_0_9": (0.80, True),
    "age_mae_70_plus": (None, False),
}


def group_figures(predictions: Path) -> dict:
    """The group figures of GROUP_TARGETS, by the audit's definitions (groups of >= 30 rows)."""
    from facefair.audit import AuditConfig, audit_predictions
    from facefair.audit.groups import load_predictions

    frame, source = load_predictions(predictions)
    config = AuditConfig(attributes=("race", "age_group"), intersections=(("race", "gender"),), n_boot=0)
    result = audit_predictions(frame, config, source)
    figures = {
        "gender_accuracy_worst_race": result.gap("gender", "race", "worst_group_accuracy")["value"],
        "gender_degree_of_bias_race_x_gender_points": 100 * result.gap("gender", "race:gender", "degree_of_bias")["value"],
        "race_recall_Others": result.metric("race", "race", "Others", "accuracy")["value"],
        "age_mae_70_plus": result.metric("age", "age_group", "70+", "mae")["value"],
    }
    children = frame[frame["age_group"].isin(["0-2", "3-9"])]
    kids = audit_predictions(children, AuditConfig(attributes=(), intersections=(), n_boot=0, tasks=("gender",)), source)
    figures["gender_accuracy_age_0_9"] = kids.metric("gender", "overall", "all", "accuracy")["value"]
    figures["children_0_9_rows"] = int(len(children))
    return {k: round(float(v), 5) for k, v in figures.items()}


def _check(value, target, higher) -> dict:
    if target is None:
        return {"value": value, "target": None, "met": None, "gap": None}
    met = value is not None and (value >= target if higher else value <= target)
    return {"value": value, "target": target, "met": met, "gap": None if value is None else round(value - target, 4)}


def transfer_figures(run: Path) -> dict[str, dict[str, float]]:
    """Per other dataset: overall accuracy per task and each race's recall (``RUN/transfer/transfer.json``,
    written by ``facefair evaluate RUN --data``); {} when the run was not evaluated elsewhere."""
    from facefair.audit.transfer import load_transfer

    transfer = load_transfer(run)
    if not transfer:
        return {}
    out = {}
    for dataset in transfer["datasets"]:
        figures = {"faces": dataset["faces"]}
        for row in dataset["groups"]:
            if row["attribute"] == "overall" and row["metric"] == "accuracy":
                figures[f"{row['task']}_accuracy"] = round(row["value_out"], 5)
            elif row["task"] == "race" and row["attribute"] == "race" and row["metric"] == "recall":
                figures[f"race_recall_{row['group']}"] = round(row["value_out"], 5)
        out[dataset["name"]] = figures
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/utkface-cpu-transfer.yaml")
    parser.add_argument("--data", help="override the config's dataset path")
    parser.add_argument("--out-dir", help="override the run folder")
    parser.add_argument("--out", default="benchmarks/results/accuracy.json")
    parser.add_argument("--from-run", help="score this finished run folder instead of training one")
    parser.add_argument("--logit-adjust", metavar="TASK",
                        help="score the run after `facefair mitigate logit-adjust --task TASK` (tau chosen on its val "
                             "split): TASK's accuracy/macro-F1 and the group figures come from the adjusted predictions")
    args = parser.parse_args(argv)

    if args.from_run:
        run = Path(args.from_run)
        report = json.loads((run / "report.json").read_text())
        wall = report["run"].get("wall_seconds_this_session")
        config_name, out_dir = str(run / "config.yaml"), str(run)
    else:
        config = RunConfig.from_dict(yaml.safe_load(Path(args.config).read_text()))
        if args.data:
            config.data.data = args.data
        if args.out_dir:
            config.train.out_dir = args.out_dir
        from facefair.train.loop import train
        started = time.perf_counter()
        report = train(config)
        wall = time.perf_counter() - started
        config_name, out_dir, run = args.config, config.train.out_dir, Path(config.train.out_dir)
    figures = dict(report["headline"])
    predictions, post_processing = run / "predictions.csv", None
    if args.logit_adjust:
        from facefair.mitigate.logit_adjust import logit_adjust_run
        summary = logit_adjust_run(run, task=args.logit_adjust)
        predictions = Path(summary["out"]) / "predictions.csv"
        for metric in ("accuracy", "macro_f1"):
            figures[f"{args.logit_adjust}_{metric}"] = round(summary["after"][metric], 5)
        post_processing = {k: summary[k] for k in ("task", "objective", "tau", "prior_source", "before", "after")}
    checks = {metric: _check(figures.get(metric), target, higher) for metric, (target, higher) in TARGETS.items()}
    groups = group_figures(predictions)
    checks.update({name: _check(groups[name], target, higher) for name, (target, higher) in GROUP_TARGETS.items()})
    for metric, check in checks.items():
        verdict = "" if check["met"] is None else ("met" if check["met"] else "NOT met")
        print(f"{metric:44s} {check['value']!s:>8}  target {check['target']}  {verdict}")
    if wall is not None:
        print(f"wall time {wall / 60:.1f} min (includes cache build if it was not there)")
    transfer = transfer_figures(run)
    for name, figures_there in transfer.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures_there.items()))
    result = {"config": config_name, "run": out_dir, "wall_seconds": None if wall is None else round(wall, 1),
              "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "device": report["run"]["device"]},
              "split_sizes": report["run"]["split_sizes"], "best_epoch": report["run"]["best_epoch"],
              "test": figures, "groups": groups, "targets": checks,
              **({"transfer": transfer} if transfer else {}),
              **({"post_processing": post_processing} if post_processing else {})}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
