"""Bad predictions tables never give a wrong number without a word (issue 32): unknown attribute
values, missing truths, untrustworthy probabilities, repeated rows, impossible ages, another
separator, a wrong task name or a photo given as the table each end in a note or a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facefair.audit import AuditConfig, audit_predictions, load_predictions, write_audit
from facefair.cli import main

RACES = ("White", "Black", "Asian")


def _table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A plausible model's table: gender (binary with probabilities), race (3 classes with
    probabilities), exact age; about 85% right, probabilities consistent with the labels."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(["Male", "Female"], n)
    race = rng.choice(RACES, n)
    p_female = np.clip(np.where(gender == "Female", 0.8, 0.2) + rng.normal(0, 0.25, n), 0.01, 0.99)
    race_logits = rng.normal(0, 1, (n, 3)) + 2.0 * (race[:, None] == np.array(RACES)[None, :])
    race_prob = np.exp(race_logits) / np.exp(race_logits).sum(axis=1, keepdims=True)
    age = rng.integers(1, 90, n).astype(float)
    return pd.DataFrame({
        "path": [f"/faces/{i}.jpg" for i in range(n)], "race": race, "gender": gender,
        "gender_true": gender, "gender_pred": np.where(p_female >= 0.5, "Female", "Male"),
        "gender_prob_Male": 1 - p_female, "gender_prob_Female": p_female,
        "race_true": race, "race_pred": np.array(RACES)[race_prob.argmax(axis=1)],
        **{f"race_prob_{r}": race_prob[:, i] for i, r in enumerate(RACES)},
        "age_true": age, "age_pred": np.clip(age + rng.normal(0, 5, n), 0, None)})


def _config(**kw) -> AuditConfig:
    base = dict(attributes=("race", "gender"), intersections=(), n_boot=50, min_group_size=5)
    return AuditConfig(**{**base, **kw})


def _overall(result, task: str, metric: str):
    rows = result.group_metrics.query("task == @task and attribute == 'overall' and metric == @metric")
    return None if rows.empty else rows.iloc[0]


def _via_csv(frame: pd.DataFrame, tmp_path, name: str = "predictions.csv", **csv) -> tuple[pd.DataFrame, str]:
    path = tmp_path / name
    frame.to_csv(path, index=False, **csv)
    return load_predictions(path)


def _audit_csv(frame: pd.DataFrame, tmp_path, **config):
    read, source = _via_csv(frame, tmp_path)
    return audit_predictions(read, _config(**config), source)


def test_unknown_attribute_value_is_no_group_and_is_counted(tmp_path):
    frame = _table()
    frame.loc[:29, "gender"] = "unknown"
    result = _audit_csv(frame, tmp_path)
    groups = set(result.group_metrics.query("attribute == 'gender'").group)
    assert groups == {"Male", "Female"}
    assert any("'gender' is unknown for 30 of 240 rows" in n for n in result.notes)
    # The rows still count overall.
    assert _overall(result, "race", "accuracy").n == 240


def test_rows_without_a_true_label_are_counted_in_the_notes(tmp_path):
    frame = _table()
    frame.loc[:19, "gender_true"] = "?"
    frame.loc[20:24, "gender_true"] = ""
    result = _audit_csv(frame, tmp_path)
    assert _overall(result, "gender", "accuracy").n == 215
    assert any("'gender': 25 predicted rows have no true label" in n for n in result.notes)
    assert "25 predicted rows have no true label" in result.summary


@pytest.mark.parametrize("case, words", [
    ("scaled", "outside [0, 1]"),
    ("negated", "outside [0, 1]"),
    ("sum", "not summing to 1"),
    ("swapped", "not their most probable class"),
])
def test_untrustworthy_probabilities_withhold_ece_and_auc(case, words, tmp_path):
    frame = _table()
    task = "race" if case == "sum" else "gender"
    if case == "scaled":
        frame["gender_prob_Female"] *= 3
    elif case == "negated":
        frame[["gender_prob_Male", "gender_prob_Female"]] *= -1
    elif case == "sum":
        frame["race_prob_White"] += 0.5
    else:  # probabilities contradicting the predicted labels
        frame[["gender_prob_Male", "gender_prob_Female"]] = frame[["gender_prob_Female", "gender_prob_Male"]].to_numpy()
    result = _audit_csv(frame, tmp_path)
    assert _overall(result, task, "ece") is None and _overall(result, task, "roc_auc") is None
    assert not result.task(task).has_probabilities
    assert any(f"Task {task!r}" in n and words in n and "withheld" in n for n in result.notes)
    # Accuracy does not depend on the probabilities and stays.
    assert _overall(result, task, "accuracy").value == pytest.approx(
        (frame[f"{task}_true"] == frame[f"{task}_pred"]).mean())


def test_consistent_probabilities_are_used(tmp_path):
    result = _audit_csv(_table(), tmp_path)
    for task in ("gender", "race"):
        assert _overall(result, task, "ece") is not None and _overall(result, task, "roc_auc") is not None
    assert not any("withheld" in n for n in result.notes)


def test_probabilities_of_a_post_processed_table_are_checked_against_the_raw_label(tmp_path):
    frame = _table()
    frame["gender_pred_raw"] = frame["gender_pred"]
    frame.loc[:9, "gender_pred"] = np.where(frame.loc[:9, "gender_pred"] == "Male", "Female", "Male")
    result = _audit_csv(frame, tmp_path)
    assert result.task("gender").has_probabilities


def test_repeated_rows_count_once_and_are_reported(tmp_path):
    frame = _table()
    once = audit_predictions(frame, _config())
    repeated = _audit_csv(pd.concat([frame] * 5, ignore_index=True), tmp_path)
    a = once.group_metrics.set_index(["task", "attribute", "group", "metric", "class"])
    b = repeated.group_metrics.set_index(["task", "attribute", "group", "metric", "class"])
    pd.testing.assert_frame_equal(a[["value", "ci_low", "ci_high", "n"]], b[["value", "ci_low", "ci_high", "n"]])
    assert any("960 rows repeat an earlier row's path (240 images" in n for n in repeated.notes)
    kept = audit_predictions(pd.concat([frame] * 2, ignore_index=True), _config(keep_duplicates=True))
    assert _overall(kept, "gender", "accuracy").n == 480
    assert any("all are counted" in n for n in kept.notes)


def test_impossible_ages_are_reported_and_kept_out_of_mae(tmp_path):
    frame = _table()
    frame.loc[0, "age_pred"], frame.loc[1, "age_pred"], frame.loc[2, "age_true"] = -5, 1e6, 150
    # -5 is a (bad) guess for a child, and the model's error to count; 1e6 years and a true age of
    # 150 are no one's age.
    plain = audit_predictions(frame.drop(index=[1, 2]).reset_index(drop=True), _config())
    result = _audit_csv(frame, tmp_path)
    assert _overall(result, "age", "mae").value == pytest.approx(_overall(plain, "age", "mae").value)
    assert _overall(result, "age", "mae").n == 238
    assert any("impossible ages" in n and "1 in age_pred (e.g. 1e+06" in n and "1 in age_true (e.g. 150)" in n
               for n in result.notes)
    assert any("1 predicted ages are outside 0-130 years (e.g. -5)" in n for n in result.notes)


def test_semicolon_separated_table_is_read_and_said(tmp_path):
    frame = _table()
    comma = audit_predictions(frame, _config())
    read, source = _via_csv(frame, tmp_path, "semicolon.csv", sep=";", decimal=",")
    result = audit_predictions(read, _config(), source)
    for task, metric in (("gender", "accuracy"), ("gender", "ece"), ("age", "mae")):
        assert _overall(result, task, metric).value == pytest.approx(_overall(comma, task, metric).value)
    assert any("semicolon-separated" in n for n in result.notes)


def test_unknown_task_names_the_valid_ones(tmp_path, capsys):
    _table().to_csv(tmp_path / "p.csv", index=False)
    assert main(["audit", str(tmp_path / "p.csv"), "--tasks", "bogus", "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'bogus'" in err and "gender, race, age" in err


def test_a_photo_is_not_a_csv_file(tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8)
    assert main(["audit", str(photo), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a CSV file" in err and "photo.jpg" in err


def test_notes_reach_the_summary_json_and_html(tmp_path):
    frame = _table()
    frame.loc[:9, "gender"] = "unknown"
    frame.loc[0, "age_pred"] = -500
    result = _audit_csv(frame, tmp_path)
    paths = write_audit(result, tmp_path / "audit")
    saved = json.loads(paths["audit.json"].read_text())
    html = paths["audit.html"].read_text()
    for words in ("'gender' is unknown for 10", "impossible ages"):
        assert words in result.summary
        assert any(words in n for n in saved["notes"])
        assert words in html.replace("&#x27;", "'")
