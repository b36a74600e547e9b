"""facefair.evaluate.ensemble: members' probabilities are averaged face by face, never across faces."""

import numpy as np
import pandas as pd
import pytest

from facefair.evaluate.ensemble import average_predictions


def member(paths, male, ages):
    return pd.DataFrame({"path": paths, "gender_true": ["Male"] * len(paths),
                         "gender_pred": ["Male" if p >= 0.5 else "Female" for p in male],
                         "gender_prob_Male": male, "gender_prob_Female": [1 - p for p in male],
                         "age_true": [30.0] * len(paths), "age_pred": ages})


def test_the_ensemble_predicts_the_class_of_the_mean_probability_and_the_mean_age():
    faces = ["a.jpg", "b.jpg"]
    out = average_predictions([member(faces, [0.9, 0.45], [20.0, 40.0]), member(faces, [0.3, 0.65], [30.0, 60.0])])
    assert out["gender_prob_Male"].tolist() == pytest.approx([0.6, 0.55])
    assert out["gender_pred"].tolist() == ["Male", "Male"]  # neither member alone says Male for both
    assert out["age_pred"].tolist() == pytest.approx([25.0, 50.0])
    assert out["gender_true"].tolist() == ["Male", "Male"]


def test_a_face_a_member_could_not_read_gets_no_ensemble_prediction():
    faces = ["a.jpg", "b.jpg"]
    out = average_predictions([member(faces, [0.9, np.nan], [20.0, 40.0]), member(faces, [0.7, 0.2], [30.0, 60.0])])
    assert out["gender_pred"].iloc[0] == "Male" and out["gender_pred"].isna().tolist() == [False, True]


def test_members_with_other_faces_or_order_are_refused():
    one = member(["a.jpg", "b.jpg"], [0.9, 0.1], [20.0, 40.0])
    with pytest.raises(ValueError, match="member 2 holds different test rows"):
        average_predictions([one, member(["b.jpg", "a.jpg"], [0.9, 0.1], [20.0, 40.0])])
    with pytest.raises(ValueError, match="different test rows"):
        average_predictions([one, member(["a.jpg"], [0.9], [20.0])])
    with pytest.raises(ValueError, match="at least one"):
        average_predictions([])
