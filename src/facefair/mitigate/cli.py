"""``facefair mitigate``: list the mitigation methods, post-process predictions with group thresholds.

    facefair mitigate methods
    facefair mitigate thresholds RUN --task gender --attribute race --constraint equalized_odds
    facefair mitigate apply-thresholds RUN/thresholded/thresholds.json other/predictions.csv --out post
    facefair mitigate logit-adjust RUN --task race --objective balanced_accuracy
    facefair mitigate apply-logit-adjust RUN/logit-adjusted/adjustment.json other/predictions.csv --out post

Training methods are chosen at ``facefair train --method NAME`` (docs/mitigate.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from facefair.run import Run


def _methods(args) -> int:
    from facefair.mitigate import METHOD_SUMMARIES
    from facefair.train.methods import METHODS
    for name in METHODS.names():
        needs, text = METHOD_SUMMARIES.get(name, (None, ""))
        labels = {True: "needs group labels", False: "no group labels", None: ""}[needs]
        print(f"{name:12s} {labels:18s} {text}")
    print("also: --sampler balanced --sampler-by ATTR... (needs group labels), --class-weights, "
          "and `facefair mitigate thresholds` (post-processing, needs group labels)")
    return 0


def _print_summary(summary: dict) -> None:
    print(f"{'':24s} {'before':>8s} {'after':>8s}")
    for key in ("accuracy", "worst_group_accuracy", "equalized_odds_difference", "demographic_parity_difference"):
        print(f"{key:24s} {summary['before'][key]:8.4f} {summary['after'][key]:8.4f}")


def _thresholds(args) -> int:
    from facefair.mitigate.thresholds import threshold_run
    summary = threshold_run(args.run, task=args.task, attribute=args.attribute, constraint=args.constraint,
                            objective=args.objective, attribute_column=args.attribute_column,
                            predictions=args.predictions, out_dir=args.out, seed=args.seed, device=args.device)
    _print_summary(summary)
    print(f"written {Run(summary['out']).predictions_path} (fitted on {summary['fitted_on']})")
    return 0


def _read_rule_inputs(rule: str, predictions: str, out: str):
    """The predictions a saved rule is applied to, and the output folder (made); both inputs must exist."""
    from facefair.table import read_predictions
    for given in (rule, predictions):
        if not Path(given).is_file():
            raise FileNotFoundError(f"{given} not found")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return read_predictions(predictions), Run(folder)


def _apply(args) -> int:
    from facefair.mitigate.thresholds import GroupThresholds, apply_group_thresholds
    frame, out = _read_rule_inputs(args.thresholds, args.predictions, args.out)
    thresholds = GroupThresholds.from_json(Path(args.thresholds).read_text())
    if args.attribute_column:
        thresholds.attribute = args.attribute_column
    written = out.write_predictions(apply_group_thresholds(frame, thresholds, seed=args.seed))
    print(json.dumps({"written": str(written), "rows": len(frame), "groups": sorted(thresholds.rules)}))
    return 0


def _logit_adjust(args) -> int:
    from facefair.mitigate.logit_adjust import logit_adjust_run
    summary = logit_adjust_run(args.run, task=args.task, objective=args.objective, tau=args.tau,
                               max_accuracy_drop=args.max_accuracy_drop,
                               predictions=args.predictions, out_dir=args.out, device=args.device)
    bound = ("" if summary["max_accuracy_drop"] is None
             else f", accuracy at most {100 * summary['max_accuracy_drop']:g} pts below the model's own")
    print(f"tau {summary['tau']:g} (chosen on {summary['fitted_on']} by {summary['objective']}{bound}; "
          f"prior from the {summary['prior_source']})")
    if "before" in summary:
        before, after = summary["before"], summary["after"]
        print(f"{'':24s} {'before':>8s} {'after':>8s}")
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            print(f"{key:24s} {before[key]:8.4f} {after[key]:8.4f}")
        for name in before["recall"]:
            print(f"{'recall ' + name:24s} {before['recall'][name]:8.4f} {after['recall'][name]:8.4f}")
    print(f"written {Run(summary['out']).predictions_path}")
    return 0


def _apply_logit_adjust(args) -> int:
    from facefair.mitigate.logit_adjust import LogitAdjustment, apply_logit_adjustment
    frame, out = _read_rule_inputs(args.adjustment, args.predictions, args.out)
    adjustment = LogitAdjustment.from_json(Path(args.adjustment).read_text())
    written = out.write_predictions(apply_logit_adjustment(frame, adjustment))
    print(json.dumps({"written": str(written), "rows": len(frame), "task": adjustment.task,
                      "tau": adjustment.tau}))
    return 0


def register(subparsers) -> None:
    from facefair.mitigate.logit_adjust import OBJECTIVES as ADJUST_OBJECTIVES
    from facefair.mitigate.thresholds import CONSTRAINTS, OBJECTIVES
    parser = subparsers.add_parser("mitigate", help="bias mitigation: list methods, group thresholds, logit adjustment",
                                   description="Bias mitigation. Training methods are chosen with "
                                               "`facefair train --method NAME` (see `facefair mitigate methods`).")
    sub = parser.add_subparsers(dest="mitigate_command", required=True)

    methods = sub.add_parser("methods", help="list the training methods and what they need")
    methods.set_defaults(func=_methods)

    fit = sub.add_parser("thresholds", help="fit group thresholds on RUN's val predictions, apply to its test ones",
                         description="Fit fairlearn ThresholdOptimizer group thresholds for a binary task on "
                                     "RUN/eval-val/predictions.csv (evaluated first if missing) and apply them to "
                                     "RUN/predictions.csv; writes RUN/thresholded/{predictions.csv,thresholds.json}.")
    fit.add_argument("run", help="finished training run folder")
    fit.add_argument("--task", default="gender", help="binary task to post-process")
    fit.add_argument("--attribute", default="race", help="sensitive attribute whose groups get thresholds")
    fit.add_argument("--attribute-column", help="column holding the attribute (default: --attribute; e.g. race_pred "
                                                "to use predicted race where true race is unknown)")
    fit.add_argument("--constraint", default="equalized_odds", choices=CONSTRAINTS)
    fit.add_argument("--objective", default="accuracy_score", choices=OBJECTIVES)
    fit.add_argument("--predictions", help="predictions CSV to post-process (default RUN/predictions.csv)")
    fit.add_argument("--out", help="output folder (default RUN/thresholded)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the randomised decisions")
    fit.add_argument("--device", default="auto", help="device for the val evaluation if it is missing")
    fit.set_defaults(func=_thresholds)

    apply = sub.add_parser("apply-thresholds", help="apply saved thresholds.json to any predictions CSV")
    apply.add_argument("thresholds", help="thresholds.json written by `facefair mitigate thresholds`")
    apply.add_argument("predictions", help="predictions CSV (from training, evaluate or predict)")
    apply.add_argument("--out", required=True, help="output folder (OUT/predictions.csv)")
    apply.add_argument("--attribute-column",
                       help="column with each row's group (e.g. race_pred for `facefair predict` output)")
    apply.add_argument("--seed", type=int, default=0)
    apply.set_defaults(func=_apply)

    adjust = sub.add_parser("logit-adjust", help="class-prior adjustment of a multi-class task, tau chosen on RUN's val",
                            description="Divide each class probability by its training prior ** tau before the "
                                        "argmax (Menon et al. 2021), tau chosen on RUN/eval-val/predictions.csv "
                                        "(evaluated first if missing), applied to RUN/predictions.csv; writes "
                                        "RUN/logit-adjusted/{predictions.csv,adjustment.json,summary.json}. "
                                        "Needs no demographic labels.")
    adjust.add_argument("run", help="finished training run folder")
    adjust.add_argument("--task", default="race", help="multi-class task to adjust")
    adjust.add_argument("--objective", default="balanced_accuracy", choices=ADJUST_OBJECTIVES,
                        help="what tau maximises on the validation predictions")
    adjust.add_argument("--tau", type=float, help="use this tau instead of choosing one (0: the model's own rule)")
    adjust.add_argument("--max-accuracy-drop", type=float,
                        help="choose only among taus whose val accuracy is at most this far below the model's own "
                             "(a fraction: 0.01 = one point); default: no bound")
    adjust.add_argument("--predictions", help="predictions CSV to adjust (default RUN/predictions.csv)")
    adjust.add_argument("--out", help="output folder (default RUN/logit-adjusted)")
    adjust.add_argument("--device", default="auto", help="device for the val evaluation if it is missing")
    adjust.set_defaults(func=_logit_adjust)

    apply_adjust = sub.add_parser("apply-logit-adjust", help="apply a saved adjustment.json to any predictions CSV")
    apply_adjust.add_argument("adjustment", help="adjustment.json written by `facefair mitigate logit-adjust`")
    apply_adjust.add_argument("predictions", help="predictions CSV (from training, evaluate or predict)")
    apply_adjust.add_argument("--out", required=True, help="output folder (OUT/predictions.csv)")
    apply_adjust.set_defaults(func=_apply_logit_adjust)
