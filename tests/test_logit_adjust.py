"""Class-prior (logit) adjustment: chosen on validation rows, moves decisions towards rare classes."""

import json

import numpy as np
import pandas as pd
import pytest

from facefair.cli import main
from facefair.mitigate.logit_adjust import (LogitAdjustment, apply_logit_adjustment, class_summary,
                                            fit_logit_adjustment)

CLASSES = ["A", "B", "C"]
PRIOR = np.array([0.45, 0.45, 0.10])


def _scored(seed, n=3000):
    """Exact posteriors of three overlapping Gaussians with a rare third class: the Bayes rule for
    accuracy (the model's argmax) under-predicts C; for balanced accuracy it divides by the prior."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.7]])
    truth = rng.choice(3, size=n, p=PRIOR)
    points = means[truth] + rng.normal(size=(n, 2))
    likelihood = np.exp(-0.5 * ((points[:, None, :] - means[None]) ** 2).sum(-1))
    posterior = likelihood * PRIOR
    posterior /= posterior.sum(1, keepdims=True)
    frame = pd.DataFrame({f"race_prob_{c}": posterior[:, i] for i, c in enumerate(CLASSES)})
    frame["race_true"] = np.asarray(CLASSES)[truth]
    frame["race_pred"] = np.asarray(CLASSES)[posterior.argmax(1)]
    return frame


def test_adjustment_chosen_on_val_raises_rare_recall_on_test():
    val, test = _scored(0), _scored(1)
    adjustment = fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR * 1000)))
    assert 0.5 <= adjustment.tau <= 1.5                  # about the Bayes rule for a uniform prior
    assert adjustment.prior == pytest.approx(list(PRIOR))
    post = apply_logit_adjustment(test, adjustment)
    before, after = class_summary(test, "race", CLASSES), class_summary(post, "race", CLASSES)
    assert after["recall"]["C"] > before["recall"]["C"] + 0.15
    assert after["balanced_accuracy"] > before["balanced_accuracy"] + 0.02
    assert (post["race_pred_raw"] == test["race_pred"]).all()
    assert post["race_prob_C"].equals(test["race_prob_C"])          # scores are the model's, unchanged
    assert LogitAdjustment.from_json(adjustment.to_json()) == adjustment
    own = fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR)), taus=(0.0,))
    assert (apply_logit_adjustment(test, own)["race_pred"] == test["race_pred"]).all()  # tau 0: the argmax
    accurate = fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR)), objective="accuracy")
    assert accurate.tau <= 0.3                           # the argmax is already the accuracy-optimal rule


def test_accuracy_bound_limits_the_price_of_rare_class_recall():
    val = _scored(0)
    free = fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR)))
    own = free.val_curve[0]
    assert own["tau"] == 0 and set(own["recall"]) == set(CLASSES)
    chosen = next(p for p in free.val_curve if p["tau"] == free.tau)
    assert own["accuracy"] - chosen["accuracy"] > 0.01   # the unbounded choice costs accuracy here
    bounded = fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR)), max_accuracy_drop=0.005)
    point = next(p for p in bounded.val_curve if p["tau"] == bounded.tau)
    assert 0 < bounded.tau < free.tau and point["accuracy"] >= own["accuracy"] - 0.005
    assert point["recall"]["C"] > own["recall"]["C"]      # still buys some of the rare class's recall
    # the best tau under the bound: every tau with more balanced accuracy breaks it
    better = [p for p in bounded.val_curve if p["balanced_accuracy"] > point["balanced_accuracy"]]
    assert better and all(p["accuracy"] < own["accuracy"] - 0.005 for p in better)
    assert LogitAdjustment.from_json(bounded.to_json()).max_accuracy_drop == 0.005
    with pytest.raises(ValueError, match="max_accuracy_drop is a fraction"):
        fit_logit_adjustment(val, "race", dict(zip(CLASSES, PRIOR)), max_accuracy_drop=2)


def test_rows_without_scores_keep_their_decision_and_bad_input_is_named():
    test = _scored(1, n=50)
    test.loc[3, [f"race_prob_{c}" for c in CLASSES]] = np.nan
    test.loc[3, "race_pred"] = "B"
    adjustment = LogitAdjustment("race", CLASSES, list(PRIOR), 1.0, "balanced_accuracy")
    assert apply_logit_adjustment(test, adjustment).loc[3, "race_pred"] == "B"
    with pytest.raises(ValueError, match=r"no training prior for race class\(es\) \['C'\]"):
        fit_logit_adjustment(_scored(0, n=50), "race", {"A": 5, "B": 5})
    with pytest.raises(ValueError, match="unknown objective"):
        fit_logit_adjustment(_scored(0, n=50), "race", dict(zip(CLASSES, PRIOR)), objective="auc")
    with pytest.raises(ValueError, match="no gender_prob_<class> columns"):
        fit_logit_adjustment(_scored(0, n=50).assign(gender_true="Male"), "gender", {})
    with pytest.raises(ValueError, match="no gender_true column"):
        fit_logit_adjustment(_scored(0, n=50), "gender", {})


def test_logit_adjust_cli_fits_on_val_and_applies_to_test(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "eval-val").mkdir(parents=True)
    _scored(0).to_csv(run / "eval-val" / "predictions.csv", index=False)
    _scored(1).to_csv(run / "predictions.csv", index=False)
    (run / "config.yaml").write_text("train:\n  tta: true\n")
    (run / "eval-val" / "report.json").write_text('{"tta": true}')
    assert main(["mitigate", "logit-adjust", str(run), "--task", "race"]) == 0
    printed = capsys.readouterr().out
    assert "recall C" in printed and "validation labels" in printed   # no dataset here: the val prior, said so
    summary = json.loads((run / "logit-adjusted" / "summary.json").read_text())
    assert summary["after"]["recall"]["C"] > summary["before"]["recall"]["C"]
    assert summary["prior"]["C"] == pytest.approx(0.1, abs=0.02)
    post = pd.read_csv(run / "logit-adjusted" / "predictions.csv")
    assert main(["mitigate", "apply-logit-adjust", str(run / "logit-adjusted" / "adjustment.json"),
                 str(run / "predictions.csv"), "--out", str(tmp_path / "again")]) == 0
    assert pd.read_csv(tmp_path / "again" / "predictions.csv")["race_pred"].equals(post["race_pred"])
    assert main(["mitigate", "logit-adjust", str(run), "--tau", "0", "--out", str(tmp_path / "own")]) == 0
    own = pd.read_csv(tmp_path / "own" / "predictions.csv")
    assert own["race_pred"].equals(own["race_pred_raw"])


def test_real_run_prior_comes_from_its_training_split_and_predict_applies_it(tiny_run, utk_sample, tmp_path,
                                                                               capsys):
    """On a real (tiny) run: the prior is its training split's race counts, and `facefair predict
    --logit-adjust` makes the same decisions as the adjustment applied to the raw probabilities."""
    adjusted = tmp_path / "adjusted"
    assert main(["mitigate", "logit-adjust", str(tiny_run), "--task", "race", "--tau", "1",
                 "--out", str(adjusted)]) == 0
    summary = json.loads((adjusted / "summary.json").read_text())
    assert summary["prior_source"].startswith("training split")
    splits = pd.read_csv(tiny_run / "splits.csv")
    assert sum(1 for s in splits["split"] if s == "train") > 0
    assert sum(summary["prior"].values()) == pytest.approx(1.0)
    faces = sorted(utk_sample.iterdir())[:24]
    listing = tmp_path / "faces.csv"
    pd.DataFrame({"file": [str(f) for f in faces]}).to_csv(listing, index=False)
    out = tmp_path / "predicted"
    assert main(["predict", str(tiny_run), str(listing), "--out", str(out), "--no-tta",
                 "--logit-adjust", str(adjusted / "adjustment.json")]) == 0
    predicted = pd.read_csv(out / "predictions.csv")
    adjustment = LogitAdjustment.from_json((adjusted / "adjustment.json").read_text())
    probabilities = predicted[[f"race_prob_{c}" for c in adjustment.classes]].to_numpy()
    expected = np.asarray(adjustment.classes)[adjustment.decide(probabilities)]
    assert (predicted["race_pred"] == expected).all() and "race_pred_raw" in predicted
    capsys.readouterr()
    assert main(["predict", str(tiny_run), str(listing), "--out", str(out),
                 "--logit-adjust", str(tmp_path / "none.json")]) != 0
    assert "none.json not found" in capsys.readouterr().err
