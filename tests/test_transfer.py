"""The cross-dataset (transfer) audit: per group figures against the run's test split, the
difference with an independent-samples interval, confusion rows, collapses, worst groups, and the
model card's Generalisation section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facefair.audit.config import AuditConfig, TransferConfig
from facefair.audit.transfer import headline_lines, on_scheme, transfer_audit, write_transfer

RACE5 = ("White", "Black", "Asian", "Indian", "Others")


def table(n_per: int, recall: dict[str, float], seed: int, classes=RACE5, truth_of=lambda c: c) -> pd.DataFrame:
    """A predictions table: each race's faces are right with probability ``recall[race]``; wrong
    ones are called White (White faces: Black)."""
    rng = np.random.default_rng(seed)
    rows = []
    for race in classes:
        for i in range(n_per):
            gender = "Female" if i % 2 else "Male"
            right = rng.random() < recall[race]
            pred = race if right else ("White" if race != "White" else "Black")
            g_pred = gender if rng.random() < 0.9 else ("Male" if gender == "Female" else "Female")
            rows.append({"path": f"{race}/{i}.jpg", "race": truth_of(race), "gender": gender,
                         "race_true": truth_of(race), "race_pred": pred,
                         **{f"race_prob_{c}": (0.8 if c == pred else 0.2 / (len(classes) - 1)) for c in classes},
                         "gender_true": gender, "gender_pred": g_pred,
                         "gender_prob_Male": 0.9 if g_pred == "Male" else 0.1,
                         "gender_prob_Female": 0.1 if g_pred == "Male" else 0.9})
    return pd.DataFrame(rows)


FAST = TransferConfig(audit=AuditConfig(n_boot=200))


def test_collapse_confusion_row_worst_group_and_difference_interval(tmp_path):
    inside = table(80, {"White": .9, "Black": .9, "Asian": .9, "Indian": .8, "Others": .3}, 0)
    outside = table(60, {"White": .95, "Black": .9, "Asian": .4, "Indian": .1, "Others": .3}, 1)
    result = transfer_audit(inside, {"other": outside}, FAST)
    [dataset] = result["datasets"]
    groups = dataset["groups"].set_index(["task", "attribute", "group"])
    asian = groups.loc[("race", "race", "Asian")]
    assert asian["metric"] == "recall" and asian["n_in"] == 80 and asian["n_out"] == 60
    expected_in = (inside.query("race == 'Asian'")["race_pred"] == "Asian").mean()
    expected_out = (outside.query("race == 'Asian'")["race_pred"] == "Asian").mean()
    assert asian["value_in"] == pytest.approx(expected_in) and asian["value_out"] == pytest.approx(expected_out)
    assert asian["change_low"] <= asian["change"] <= asian["change_high"] < 0  # a clear loss
    assert asian["collapsed"] and "down" in asian["reason"]
    assert groups.loc[("race", "race", "Indian")]["collapsed"]
    assert not groups.loc[("race", "race", "Black")]["collapsed"]
    # Others was already poor inside (.3) and stays so: below the floor, not a drop.
    others = groups.loc[("race", "race", "Others")]
    assert others["collapsed"] and others["reason"] == "below 0.50"
    # The change's interval is wider than either side's own: two independent samples' uncertainty.
    width = lambda lo, hi: hi - lo  # noqa: E731
    assert width(asian["change_low"], asian["change_high"]) > width(asian["ci_low_out"], asian["ci_high_out"])

    sentence = next(s for s in dataset["errors"] if s["task"] == "race" and s["group"] == "Asian")
    called = int((outside.query("race == 'Asian'")["race_pred"] == "White").sum())
    assert sentence["called"] == "White" and sentence["text"] == (
        f"Asian faces: {called / 60:.0%} called White ({called} of 60)")
    worst = next(w for w in dataset["worst_groups"] if w["task"] == "race" and w["attribute"] == "race")
    assert worst["worst_outside"] == "Indian" and worst["worst_inside"] == "Others" and not worst["same"]

    out = write_transfer(result, tmp_path / "transfer")
    saved = json.loads((out / "transfer.json").read_text())
    assert {c["group"] for c in saved["datasets"][0]["collapsed"] if c["metric"] == "recall"} >= {"Asian", "Indian"}
    assert "independent samples" in saved["definitions"]["change"]
    csv = pd.read_csv(out / "transfer_groups.csv")
    assert {"race", "gender", "race:gender", "overall"} <= set(csv["attribute"])
    html = (out / "transfer.html").read_text()
    assert "Asian faces:" in html and "collapsed" in html
    lines = "\n".join(headline_lines(dataset))
    assert "race recall Asian (n=60)" in lines and "COLLAPSED" in lines


def test_a_finer_model_is_compared_on_the_scheme_both_share():
    """A race7 model's test split against a race5 dataset: both read in race5."""
    race7 = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
    inside = table(40, dict.fromkeys(race7, 0.9), 0, classes=race7)
    outside = table(40, dict.fromkeys(RACE5, 0.9), 1)
    read = on_scheme(inside, "race5")
    assert set(read["race_true"]) == set(RACE5)
    assert {c for c in read.columns if c.startswith("race_prob_")} == {f"race_prob_{c}" for c in RACE5}
    east = read[inside["race_pred"] == "East Asian"]
    assert (east["race_pred"] == "Asian").all()
    assert east["race_prob_Asian"].to_numpy() == pytest.approx(0.8 + 0.2 / 6)  # East + Southeast Asian summed
    [dataset] = transfer_audit(inside, {"utk": outside}, FAST)["datasets"]
    assert dataset["race_scheme"] == "race5"
    assert set(dataset["groups"].query("attribute == 'race'")["group"]) == set(RACE5)


def test_evaluate_with_two_datasets_writes_the_transfer_report_and_the_card_section(tiny_run, utk_sample, tmp_path,
                                                                                 capsys):
    import shutil
    from pathlib import Path

    from facefair.audit.card import model_card
    from facefair.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert "Not measured" in model_card(run, n_boot=20)  # before: the card says how to measure it
    faces = sorted(utk_sample.iterdir())[:16]
    for i, face in enumerate(faces):
        for name, folders in (("studio", ("female", "asian") if i % 2 else ("male", "caucasian")),
                              ("street", ("Black", "Woman") if i % 2 else ("Indian", "Man"))):
            target = tmp_path / name / Path(*folders) / face.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(face, target)
    assert main(["evaluate", str(run), "--data", str(tmp_path / "studio"), "--data", str(tmp_path / "street"),
                 "--no-tta", "--no-framing-check", "--n-boot", "30"]) == 0
    printed = capsys.readouterr().out
    assert "transfer: studio (16 faces)" in printed and "transfer: street (16 faces)" in printed
    assert "race recall Asian (n=8)" in printed and "transfer report:" in printed
    assert (run / "eval-studio" / "predictions.csv").is_file() and (run / "eval-street" / "report.json").is_file()
    groups = pd.read_csv(run / "transfer" / "transfer_groups.csv")
    assert set(groups["dataset"]) == {"studio", "street"}
    studio = groups[(groups["dataset"] == "studio") & (groups["attribute"] == "race")]
    assert set(studio["group"]) == {"Asian", "White"} and (studio["n_out"] == 8).all()
    assert not groups["judged"].any()  # 8 faces a group: shown, too few to judge or flag
    card = model_card(run, n_boot=20)
    section = card[card.index("## Generalisation"):card.index("## Limitations")]
    assert "| studio | 16 | race5 | race |" in section and "| street | 16 |" in section
    assert "**Where the model fails on studio** (16 faces" in section
    # the command a reader can copy names the folder (it printed "Run('...')")
    assert f"Checked with `facefair evaluate {run} --data ...`" in section


def test_transfer_needs_the_runs_test_predictions_and_says_how(tiny_run, tmp_path):
    import shutil

    from facefair.cli import main

    run = tmp_path / "bare"
    shutil.copytree(tiny_run, run)
    (run / "predictions.csv").unlink()
    assert main(["evaluate", str(run), "--data", str(tmp_path)]) == 2
