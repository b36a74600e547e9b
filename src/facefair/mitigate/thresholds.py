"""Post-processing: group-specific decision thresholds for a binary task (Hardt et al. 2016, via
fairlearn's ``ThresholdOptimizer``).

Fitted on a run's *validation* predictions (``RUN/eval-val/predictions.csv``) and applied to its
test predictions, so the test split stays untouched by the choice.  The model's scores
(``T_prob_<positive class>``) are kept; ``T_pred`` becomes the post-processed decision (the old one
is kept as ``T_pred_raw``, and the probability the rule says "positive" as ``T_postproc_pmf``).
Equalized-odds solutions randomise between two thresholds for some groups; the draw is seeded.
Rows whose group was not seen at fitting time (or is missing) keep their raw prediction.

Needs the sensitive attribute of every row it is applied to: the true label for an audit, or a
predicted one (``attribute_column='race_pred'``) where true labels do not exist.

    facefair mitigate thresholds RUN --task gender --attribute race --constraint equalized_odds
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from facefair.run import Run
from facefair.table import classes_of, read_predictions, write_predictions

CONSTRAINTS = ("equalized_odds", "demographic_parity", "true_positive_rate_parity", "false_positive_rate_parity",
               "true_negative_rate_parity", "false_negative_rate_parity")
OBJECTIVES = ("accuracy_score", "balanced_accuracy_score")


class ScoreColumn(BaseEstimator, ClassifierMixin):
    """A 'prefit' classifier whose positive-class probability is the first column of X: lets
    fairlearn post-process scores a model already wrote."""

    def fit(self, X=None, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        score = np.asarray(X, dtype=float)[:, 0]
        return np.column_stack([1.0 - score, score])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class GroupRule:
    """With probability p0 apply ``score op0 threshold0``, else ``score op1 threshold1``; then, for
    equalized odds, with probability p_ignore predict positive with probability ``constant``."""
    p0: float
    operator0: str
    threshold0: float
    p1: float
    operator1: str
    threshold1: float
    p_ignore: float = 0.0
    constant: float = 0.0

    def positive_probability(self, scores: np.ndarray) -> np.ndarray:
        def apply(operator: str, threshold: float) -> np.ndarray:
            return (scores > threshold) if operator == ">" else (scores < threshold)
        p = self.p0 * apply(self.operator0, self.threshold0) + self.p1 * apply(self.operator1, self.threshold1)
        return self.p_ignore * self.constant + (1 - self.p_ignore) * p


@dataclass
class GroupThresholds:
    task: str
    attribute: str
    classes: list[str]              # [negative, positive]
    constraint: str
    objective: str
    rules: dict[str, GroupRule] = field(default_factory=dict)

    @property
    def positive(self) -> str:
        return self.classes[1]

    def to_json(self) -> str:
        def encode(value):
            return str(value) if isinstance(value, float) and math.isinf(value) else value
        raw = asdict(self)
        raw["rules"] = {g: {k: encode(v) for k, v in r.items()} for g, r in raw["rules"].items()}
        return json.dumps(raw, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "GroupThresholds":
        raw = json.loads(text)
        rules = {g: GroupRule(**{k: float(v) if k in ("threshold0", "threshold1") else v for k, v in r.items()})
                 for g, r in raw.pop("rules").items()}
        return cls(**raw, rules=rules)


def _scores(frame: pd.DataFrame, task: str, classes: Optional[list[str]] = None) -> tuple[np.ndarray, list[str]]:
    found = classes_of(frame, task)
    if not found:
        raise ValueError(f"no {task}_prob_<class> columns in the predictions")
    if len(found) != 2:
        raise ValueError(f"group thresholds need a binary task; {task} has {len(found)} classes {found}")
    classes = classes or found
    return frame[f"{task}_prob_{classes[1]}"].to_numpy(dtype=float), classes


def fit_group_thresholds(frame: pd.DataFrame, task: str = "gender", attribute: str = "race",
                         constraint: str = "equalized_odds", objective: str = "accuracy_score",
                         attribute_column: Optional[str] = None, grid_size: int = 1000) -> GroupThresholds:
    """Per-group rules that optimise ``objective`` subject to ``constraint`` across ``attribute``
    groups, fitted on ``frame`` (validation predictions: ``T_true``, ``T_prob_*``, the attribute)."""
    from fairlearn.postprocessing import ThresholdOptimizer
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {constraint!r}; known: {', '.join(CONSTRAINTS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    column = attribute_column or attribute
    for needed in (f"{task}_true", column):
        if needed not in frame:
            raise ValueError(f"the predictions have no {needed!r} column")
    scores, classes = _scores(frame, task)
    usable = ~np.isnan(scores) & frame[f"{task}_true"].isin(classes).to_numpy() & frame[column].notna().to_numpy()
    if usable.sum() == 0:
        raise ValueError(f"no row with a {task} label, a score and a {column} value to fit on")
    groups = frame.loc[usable, column].astype(str).to_numpy()
    labels = (frame.loc[usable, f"{task}_true"] == classes[1]).astype(int).to_numpy()
    for group in np.unique(groups):
        if len(np.unique(labels[groups == group])) < 2:
            raise ValueError(f"group {group!r} has only one {task} class in the fitting data; "
                             f"thresholds for it cannot be fitted")
    optimizer = ThresholdOptimizer(estimator=ScoreColumn().fit(), constraints=constraint, objective=objective,
                                   prefit=True, predict_method="predict_proba", grid_size=grid_size)
    optimizer.fit(scores[usable, None], labels, sensitive_features=groups)
    rules = {}
    for group, rule in optimizer.interpolated_thresholder_.interpolation_dict.items():
        rules[str(group)] = GroupRule(
            p0=float(rule.p0), operator0=rule.operation0.operator, threshold0=float(rule.operation0.threshold),
            p1=float(rule.p1), operator1=rule.operation1.operator, threshold1=float(rule.operation1.threshold),
            p_ignore=float(rule.get("p_ignore", 0.0)), constant=float(rule.get("prediction_constant", 0.0)))
    return GroupThresholds(task, column, list(classes), constraint, objective, rules)


def apply_group_thresholds(frame: pd.DataFrame, thresholds: GroupThresholds, seed: int = 0) -> pd.DataFrame:
    """A copy of the predictions with ``T_pred`` post-processed (``T_pred_raw`` keeps the old one)."""
    task = thresholds.task
    if thresholds.attribute not in frame:
        raise ValueError(f"the predictions have no {thresholds.attribute!r} column to pick each row's thresholds")
    scores, _ = _scores(frame, task, thresholds.classes)
    groups = frame[thresholds.attribute].map(lambda v: None if v is None or v != v else str(v)).to_numpy()
    pmf = np.full(len(frame), np.nan)
    for group, rule in thresholds.rules.items():
        rows = (groups == group) & ~np.isnan(scores)
        pmf[rows] = rule.positive_probability(scores[rows])
    draw = np.random.default_rng(seed).random(len(frame))
    out = frame.copy()
    raw = frame[f"{task}_pred"]
    decided = ~np.isnan(pmf)
    post = np.where(pmf >= draw, thresholds.classes[1], thresholds.classes[0])
    out[f"{task}_pred_raw"] = raw
    out[f"{task}_pred"] = np.where(decided, post, raw.to_numpy(dtype=object))
    out[f"{task}_postproc_pmf"] = pmf
    return out


def binary_summary(frame: pd.DataFrame, task: str, attribute: str, positive: str) -> dict:
    """Accuracy and fairlearn's equalized-odds / demographic-parity differences across ``attribute``."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    rows = frame[f"{task}_true"].notna() & frame[f"{task}_pred"].notna() & frame[attribute].notna()
    part = frame[rows]
    truth = (part[f"{task}_true"] == positive).astype(int)
    pred = (part[f"{task}_pred"] == positive).astype(int)
    groups = part[attribute].astype(str)
    accuracy_by_group = (truth == pred).groupby(groups).mean()
    return {"n": int(rows.sum()), "accuracy": float((truth == pred).mean()),
            "worst_group_accuracy": float(accuracy_by_group.min()),
            "equalized_odds_difference": float(equalized_odds_difference(truth, pred, sensitive_features=groups)),
            "demographic_parity_difference": float(demographic_parity_difference(truth, pred,
                                                                                 sensitive_features=groups))}


def run_tta(run: Path) -> bool:
    """Whether the run's own test predictions averaged over mirrored faces (``train.tta``)."""
    run = Run(run)
    run.require()
    return bool((run.raw_config().get("train") or {}).get("tta", True))


def val_scores_tta(val_path: Path) -> Optional[bool]:
    """How the saved validation predictions were made (None: absent, or written before evaluate
    recorded it, so unknown and made again)."""
    folder = Run(val_path.parent)
    if not val_path.exists() or not folder.report_path.exists():
        return None
    value = folder.report().get("tta")
    return None if value is None else bool(value)


def threshold_run(run_dir: str | Path, *, task: str = "gender", attribute: str = "race",
                  constraint: str = "equalized_odds", objective: str = "accuracy_score",
                  attribute_column: Optional[str] = None, predictions: Optional[str | Path] = None,
                  out_dir: Optional[str | Path] = None, seed: int = 0, device: str = "auto") -> dict:
    """Fit on RUN's validation predictions (made with ``evaluate_run`` if missing), apply to its
    test predictions (or ``predictions``), write ``OUT/predictions.csv`` + ``thresholds.json``."""
    run = Run(run_dir)
    val_path = Run(run.eval_dir("val")).predictions_path
    tta = run_tta(run.folder)
    if val_scores_tta(val_path) != tta:
        # Thresholds fitted on TTA scores would be applied to the run's non-TTA test scores (or the
        # reverse): a shifted score distribution.  Fit on scores made the way the run's were.
        from facefair.evaluate.run import evaluate_run
        evaluate_run(str(run.folder), split="val", device=device, tta=tta)
    test_path = Path(predictions) if predictions else run.predictions_path
    if not test_path.exists():
        raise FileNotFoundError(f"{test_path} not found: is {run.folder} a finished training run?")
    thresholds = fit_group_thresholds(read_predictions(val_path), task, attribute, constraint, objective,
                                      attribute_column)
    test = read_predictions(test_path)
    post = apply_group_thresholds(test, thresholds, seed=seed)
    out = Path(out_dir) if out_dir else run.folder / "thresholded"
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(post, Run(out).predictions_path)
    (out / "thresholds.json").write_text(thresholds.to_json())
    before = binary_summary(test, task, attribute, thresholds.positive)
    after = binary_summary(post, task, attribute, thresholds.positive)
    summary = {"run": str(run.folder), "fitted_on": str(val_path), "applied_to": str(test_path), "out": str(out),
               "tta": tta,
               "task": task, "attribute": attribute, "constraint": constraint, "objective": objective,
               "before": before, "after": after}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
