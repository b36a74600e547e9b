"""Post-processing: class-prior (logit) adjustment for a multi-class task (Menon et al. 2021, post-hoc).

A model trained on imbalanced classes learns their prior, so it under-predicts the rare ones
(UTKFace's race "Others", 7% of the training rows, is recalled about a third of the time).  Dividing
each class probability by ``prior ** tau`` before the argmax moves decisions towards the rare
classes: ``tau = 0`` is the model's own decision, ``tau = 1`` the Bayes rule for a uniform class
prior.  ``tau`` is chosen on the run's *validation* predictions (``RUN/eval-val/predictions.csv``,
evaluated first when missing) by an explicit objective, so the test split stays untouched by the
choice.  The prior is the class frequencies of the run's training split (its ``splits.csv`` joined
to the dataset's labels), or of the validation labels when the dataset is not on this machine
(stratified splits make the two agree; the source is recorded).

Each class's gain is paid for by the others (a tau that doubles the rare class's recall costs the
common classes some of theirs, and plain accuracy falls): ``max_accuracy_drop`` bounds that price,
choosing the best ``tau`` among those whose validation accuracy is at most that far below the
model's own (``tau = 0``).  The validation curve keeps every tau's per-class recall, so the whole
trade-off is on record.

Unlike group thresholds this needs no demographic labels at prediction time: it changes one task's
decision rule for every row alike.  The probabilities are kept as the model wrote them;
``T_pred`` becomes the adjusted decision and ``T_pred_raw`` keeps the model's own.

    facefair mitigate logit-adjust RUN --task race --objective balanced_accuracy [--max-accuracy-drop 0.01]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from facefair.run import Run
from facefair.table import classes_of, read_predictions, write_predictions

OBJECTIVES = ("balanced_accuracy", "macro_f1", "accuracy")
#: the default search grid: 0 (the model's own rule) to 1.5 in steps of 0.05
TAUS = tuple(round(0.05 * i, 2) for i in range(31))


@dataclass
class LogitAdjustment:
    """``argmax_k log p_k - tau * log prior_k`` for one task, and the validation curve it was chosen from."""

    task: str
    classes: list[str]
    prior: list[float]
    tau: float
    objective: str
    prior_source: str = ""
    val_curve: list[dict] = field(default_factory=list)  # [{"tau", objective, "accuracy", "recall"}, ...]
    max_accuracy_drop: Optional[float] = None

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Index of the adjusted decision for each row of ``probabilities`` (rows x classes)."""
        with np.errstate(divide="ignore"):
            scores = np.log(probabilities) - self.tau * np.log(np.asarray(self.prior))
        return np.argmax(scores, axis=1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "LogitAdjustment":
        return cls(**json.loads(text))


def _probabilities(frame: pd.DataFrame, task: str, classes: Optional[list[str]] = None) -> tuple[np.ndarray, list[str]]:
    found = classes_of(frame, task)
    if not found:
        raise ValueError(f"no {task}_prob_<class> columns in the predictions")
    classes = classes or found
    missing = [c for c in classes if f"{task}_prob_{c}" not in frame]
    if missing:
        raise ValueError(f"the predictions have no probability column for {task} class(es) {missing}")
    return frame[[f"{task}_prob_{c}" for c in classes]].to_numpy(dtype=float), classes


def _score(objective: str, truth: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    if objective == "balanced_accuracy":
        return float(balanced_accuracy_score(truth, predicted))
    if objective == "macro_f1":
        return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))
    return float(accuracy_score(truth, predicted))


def fit_logit_adjustment(frame: pd.DataFrame, task: str, prior: dict[str, float], *,
                         objective: str = "balanced_accuracy", taus=TAUS, prior_source: str = "",
                         max_accuracy_drop: Optional[float] = None) -> LogitAdjustment:
    """Choose ``tau`` on ``frame`` (validation predictions: ``T_true`` and ``T_prob_*``) by ``objective``,
    among the taus whose accuracy is at most ``max_accuracy_drop`` (a fraction: 0.01 = one point)
    below the model's own argmax, if given; ties go to the smallest ``tau`` (the rule closest to
    the model's own)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop <= 1:
        raise ValueError(f"max_accuracy_drop is a fraction of accuracy in [0, 1], got {max_accuracy_drop}")
    if f"{task}_true" not in frame:
        raise ValueError(f"the predictions have no {task}_true column to fit on")
    probabilities, classes = _probabilities(frame, task)
    if len(classes) < 2:
        raise ValueError(f"{task} has one class; nothing to adjust")
    unknown = [c for c in classes if not prior.get(c)]
    if unknown:
        raise ValueError(f"no training prior for {task} class(es) {unknown}: every class needs training rows")
    total = sum(prior[c] for c in classes)
    adjustment = LogitAdjustment(task, list(classes), [prior[c] / total for c in classes], 0.0, objective,
                                 prior_source, max_accuracy_drop=max_accuracy_drop)
    usable = frame[f"{task}_true"].isin(classes).to_numpy() & ~np.isnan(probabilities).any(axis=1)
    if usable.sum() == 0:
        raise ValueError(f"no row with a {task} label and scores to fit on")
    truth = frame.loc[usable, f"{task}_true"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    labels = np.arange(len(classes))
    own_accuracy = float((np.argmax(probabilities[usable], axis=1) == truth).mean())
    floor = -np.inf if max_accuracy_drop is None else own_accuracy - max_accuracy_drop - 1e-12
    best = None
    for tau in taus:
        adjustment.tau = float(tau)
        predicted = adjustment.decide(probabilities[usable])
        recall = [float((predicted[truth == k] == k).mean()) if (truth == k).any() else None for k in labels]
        point = {"tau": float(tau), objective: _score(objective, truth, predicted, labels),
                 "accuracy": float((predicted == truth).mean()), "recall": dict(zip(classes, recall))}
        adjustment.val_curve.append(point)
        if point["accuracy"] >= floor and (best is None or point[objective] > best[objective] + 1e-12):
            best = point
    adjustment.tau = best["tau"] if best is not None else 0.0  # no tau within the bound: the model's own rule
    return adjustment


def apply_logit_adjustment(frame: pd.DataFrame, adjustment: LogitAdjustment) -> pd.DataFrame:
    """A copy of the predictions with ``T_pred`` adjusted (``T_pred_raw`` keeps the model's decision)."""
    task = adjustment.task
    probabilities, classes = _probabilities(frame, task, adjustment.classes)
    scored = ~np.isnan(probabilities).any(axis=1)
    out = frame.copy()
    raw = frame[f"{task}_pred"] if f"{task}_pred" in frame else pd.Series([None] * len(frame), index=frame.index)
    decided = np.asarray(classes, dtype=object)[adjustment.decide(np.where(scored[:, None], probabilities, 1.0))]
    out[f"{task}_pred_raw"] = raw
    out[f"{task}_pred"] = np.where(scored, decided, raw.to_numpy(dtype=object))
    return out


def training_prior(run: Path, task: str, val: pd.DataFrame) -> tuple[dict[str, float], str]:
    """Class counts of the run's training split, else of the validation labels (and which it was)."""
    from facefair.audit.card import training_group_counts
    counts, why = training_group_counts(Run(run), Run(run).report())
    if counts.get(task):
        return {k: float(v) for k, v in counts[task].items()}, f"training split ({why})"
    labels = val[f"{task}_true"].dropna().astype(str).value_counts()
    return {k: float(v) for k, v in labels.items()}, f"validation labels ({why or 'no training counts'})"


def class_summary(frame: pd.DataFrame, task: str, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and recall per class (sklearn's definitions)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
    rows = frame[f"{task}_true"].isin(classes) & frame[f"{task}_pred"].notna()
    truth, pred = frame.loc[rows, f"{task}_true"].astype(str), frame.loc[rows, f"{task}_pred"].astype(str)
    recalls = recall_score(truth, pred, labels=classes, average=None, zero_division=0)
    return {"n": int(rows.sum()), "accuracy": float(accuracy_score(truth, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, labels=classes, average="macro", zero_division=0)),
            "recall": {c: float(r) for c, r in zip(classes, recalls)}}


def logit_adjust_run(run_dir: str | Path, *, task: str = "race", objective: str = "balanced_accuracy",
                     tau: Optional[float] = None, max_accuracy_drop: Optional[float] = None,
                     predictions: Optional[str | Path] = None,
                     out_dir: Optional[str | Path] = None, device: str = "auto") -> dict:
    """Fit ``tau`` on RUN's validation predictions (or take ``tau``), apply to its test predictions
    (or ``predictions``); writes ``OUT/predictions.csv``, ``adjustment.json`` and ``summary.json``."""
    from facefair.mitigate.thresholds import run_tta, val_scores_tta
    run = Run(run_dir)
    val_path = Run(run.eval_dir("val")).predictions_path
    tta = run_tta(run.folder)
    if val_scores_tta(val_path) != tta:  # fit on scores made the way the test ones were (see thresholds)
        from facefair.evaluate.run import evaluate_run
        evaluate_run(str(run.folder), split="val", device=device, tta=tta)
    test_path = Path(predictions) if predictions else run.predictions_path
    if not test_path.exists():
        raise FileNotFoundError(f"{test_path} not found: is {run.folder} a finished training run?")
    val = read_predictions(val_path)
    if f"{task}_true" not in val:
        raise ValueError(f"{val_path} has no {task}_true column: the run has no {task} labels to fit on")
    prior, source = training_prior(run.folder, task, val)
    adjustment = fit_logit_adjustment(val, task, prior, objective=objective,
                                      taus=TAUS if tau is None else (tau,), prior_source=source,
                                      max_accuracy_drop=None if tau is not None else max_accuracy_drop)
    test = read_predictions(test_path)
    post = apply_logit_adjustment(test, adjustment)
    out = Path(out_dir) if out_dir else run.folder / "logit-adjusted"
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(post, Run(out).predictions_path)
    (out / "adjustment.json").write_text(adjustment.to_json())
    summary = {"run": str(run.folder), "fitted_on": str(val_path), "applied_to": str(test_path), "out": str(out),
               "task": task, "objective": objective, "max_accuracy_drop": adjustment.max_accuracy_drop,
               "tau": adjustment.tau, "prior_source": source,
               "prior": dict(zip(adjustment.classes, adjustment.prior))}
    if f"{task}_true" in test:
        summary["before"] = class_summary(test, task, adjustment.classes)
        summary["after"] = class_summary(post, task, adjustment.classes)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
