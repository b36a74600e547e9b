"""Face heads: classifiers on dlib face descriptors that a model defers to for some tasks.

Their arrays must reproduce the sklearn models they came from, load without running code, be
refused with a clear message when they do not fit the model, and be used by every path that
predicts (training's test report, predict, the Python API) while ONNX export refuses them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from facefair.models.face_features import DIMENSIONS
from facefair.models.face_heads import FaceHeads, FaceHeadsError, Head, head_from_sklearn
from facefair.tasks import make_tasks


def _fitted(kind: str, n_classes: int, seed: int = 0):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, DIMENSIONS)) * 2 + 1
    y = (x[:, :n_classes] + rng.normal(size=(300, n_classes))).argmax(axis=1)
    model = {"logistic": LogisticRegression(C=0.1, max_iter=2000),
             "mlp": MLPClassifier((16,), max_iter=2000, random_state=0),
             "ridge": Ridge(alpha=1.0)}[kind]
    target = x[:, 0] * 10 + 30 if kind == "ridge" else y
    return make_pipeline(StandardScaler(), model).fit(x, target), x


@pytest.mark.parametrize("kind, task_name, n_classes", [
    ("logistic", "gender", 2), ("logistic", "race", 5), ("mlp", "gender", 2), ("mlp", "race", 5)])
def test_head_arrays_reproduce_the_sklearn_model(kind, task_name, n_classes):
    task = make_tasks([task_name], "race5")[0]
    pipeline, x = _fitted(kind, n_classes)
    head = head_from_sklearn(task, pipeline, np.arange(n_classes))
    np.testing.assert_allclose(head.predict(x), pipeline.predict_proba(x), atol=1e-6)


def test_regression_head_and_a_class_the_training_rows_lacked():
    age = make_tasks(["age"], None)[0]
    pipeline, x = _fitted("ridge", 1)
    np.testing.assert_allclose(head_from_sklearn(age, pipeline, np.empty(0, int)).predict(x), pipeline.predict(x),
                               atol=1e-6)
    race = make_tasks(["race"], "race5")[0]
    pipeline, x = _fitted("logistic", 3)
    head = head_from_sklearn(race, pipeline, np.array([0, 2, 4]))   # no Black, no Indian rows
    probs = head.predict(x)
    assert probs.shape == (300, 5) and np.all(probs[:, [1, 3]] == 0)
    np.testing.assert_allclose(probs[:, [0, 2, 4]], pipeline.predict_proba(x), atol=1e-6)


def _heads(weights=None) -> FaceHeads:
    tasks = make_tasks(["gender", "race"], "race5")
    heads = {}
    for task in tasks:
        pipeline, _ = _fitted("logistic", task.num_classes)
        heads[task.name] = head_from_sklearn(task, pipeline, np.arange(task.num_classes),
                                             (weights or {}).get(task.name, 1.0), "logistic C=0.1")
    return FaceHeads(heads, info={"n_train": 300})


def test_blend_weights_the_head_against_the_cnn_and_keeps_rows_without_output():
    heads = _heads({"gender": 0.5, "race": 1.0})
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4, DIMENSIONS)).astype(np.float32)
    vectors[3] = np.nan                                   # no descriptor: the CNN's answer stays
    cnn = {"gender": rng.dirichlet([1, 1], 4).astype(np.float32), "race": rng.dirichlet(np.ones(5), 4).astype(np.float32),
           "age": np.array([20.0, 30.0, np.nan, 40.0], np.float32)}
    cnn["race"][2] = np.nan                               # the CNN could not read row 2
    out = heads.blend(cnn, vectors)
    mine = heads.outputs(vectors)
    np.testing.assert_allclose(out["gender"][:3], 0.5 * mine["gender"][:3] + 0.5 * cnn["gender"][:3], atol=1e-6)
    np.testing.assert_allclose(out["race"][:2], mine["race"][:2], atol=1e-6)
    assert np.isnan(out["race"][2]).all()
    np.testing.assert_array_equal(out["race"][3], cnn["race"][3])
    np.testing.assert_array_equal(out["age"], cnn["age"])   # tasks without a head are the CNN's
    with pytest.raises(FaceHeadsError, match="weight must be in"):
        Head("race", ["a", "b"], np.zeros(2), np.ones(2), [(np.zeros((2, 2)), np.zeros(2))], weight=1.5)


def test_file_round_trip_is_plain_arrays_and_checked_against_the_model(tmp_path):
    heads = _heads({"gender": 0.5})
    path = heads.save(tmp_path / "face_heads.safetensors")
    tasks = make_tasks(["gender", "race", "age"], "race5")
    again = FaceHeads.load(path, tasks)
    x = np.random.default_rng(2).normal(size=(5, DIMENSIONS))
    for name in ("gender", "race"):
        np.testing.assert_array_equal(again.heads[name].predict(x), heads.heads[name].predict(x))
    assert again.heads["gender"].weight == 0.5 and again.info == {"n_train": 300}
    assert "gender (logistic C=0.1, weight 0.5)" in again.describe()
    with pytest.raises(FaceHeadsError, match="classes"):
        FaceHeads.load(path, make_tasks(["gender", "race"], "race7"))
    with pytest.raises(FaceHeadsError, match="not one of the model's tasks"):
        FaceHeads.load(path, make_tasks(["gender"], None))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x80\x04 a pickle, not a safetensors file")
    with pytest.raises(FaceHeadsError, match="broken.safetensors: unreadable face-heads file"):
        FaceHeads.load(broken)


def test_training_with_face_heads_reports_both_and_every_path_uses_them(hybrid_run, tmp_path):
    import facefair as ff
    from facefair.models.face_features import face_descriptors
    from facefair.run import Run

    root, report, passes = hybrid_run
    run = Run(root / "run")
    assert run.face_heads_path.is_file()
    assert set(report["face_heads"]["selection"]) == {"gender", "race"}
    assert "race_accuracy" in report["face_heads"]["cnn_only"]["headline"]
    cnn_only = run.eval_dir("test-cnn-only")
    assert (cnn_only / "predictions.csv").is_file()
    # The CNN went over the test split once; both test reports came from that one pass.
    assert passes.count(report["run"]["split_sizes"]["test"]) == 1, passes
    # The run's test predictions: race is the face head's answer, not the CNN's.
    table = run.predictions()
    model = ff.load(run.folder)
    heads = model.module.face_heads
    assert heads is not None and heads.heads["race"].weight == 1.0
    paths = table["path"].tolist()[:6]
    vectors = face_descriptors(paths, None, progress=False).vectors
    expected = heads.heads["race"].predict(vectors)
    columns = [f"race_prob_{c}" for c in heads.heads["race"].classes]
    np.testing.assert_allclose(table[columns].to_numpy()[:6], expected, atol=1e-4)
    # predict (files) through the API gives the same race probabilities for the same files.
    predicted = model.predict(paths)
    np.testing.assert_allclose(predicted[columns].to_numpy(), expected, atol=1e-4)
    # The CNN alone answered differently (otherwise this test could not tell them apart).
    cnn_table = pd.read_csv(cnn_only / "predictions.csv")
    assert not np.allclose(cnn_table[columns].to_numpy()[:6], expected, atol=1e-3)


def test_export_keeps_or_refuses_the_face_heads(hybrid_run, tmp_path):
    from facefair.export.cli import export_safetensors
    from facefair.export.onnx_export import export_onnx
    from facefair.run import Run

    root, *_ = hybrid_run
    with pytest.raises(ValueError, match="ONNX cannot hold"):
        export_onnx(root / "run", tmp_path / "model.onnx")
    export_safetensors(str(root / "run"), str(tmp_path / "export"))
    assert Run(tmp_path / "export").face_heads_path.is_file()


def test_a_tampered_heads_file_stops_loading_with_the_file_named(hybrid_run, tmp_path):
    from facefair.models.multitask import load_model
    from facefair.models.serialization import CheckpointError
    from facefair.run import Run

    root, *_ = hybrid_run
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    Run(copy).face_heads_path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="face_heads.safetensors: unreadable face-heads file"):
        load_model(copy)


def test_face_heads_command_checks_its_weights(hybrid_run, tmp_path):
    root, *_ = hybrid_run
    for weights, message in ((["race=2"], "must be in (0, 1]"), (["age=1"], "classification tasks only"),
                             (["eyes=1"], "not one of the model's tasks"), (["race"], "is not KEY=VALUE")):
        done = subprocess.run([sys.executable, "-m", "facefair", "face-heads", str(root / "run"), "--weights",
                               *weights, "--no-progress"], capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, (weights, done.stderr[-800:])
    assert json.loads((root / "run" / "report.json").read_text())["face_heads"]  # untouched


def test_descriptors_from_a_process_pool_match_one_process(utk_sample, tmp_path):
    from facefair.models.face_features import face_descriptors

    paths = sorted(str(p) for p in utk_sample.iterdir())[:6]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    alone = face_descriptors(paths + [str(broken)], None, progress=False, workers=1, batch_size=2)
    pooled = face_descriptors(paths + [str(broken)], None, progress=False, workers=2, batch_size=2)
    np.testing.assert_array_equal(pooled.vectors, alone.vectors)
    assert list(pooled.bad) == [str(broken)] and np.isnan(pooled.vectors[-1]).all()


def test_face_heads_command_attaches_to_a_finished_run_and_keeps_the_cnn_report(tiny_run, hybrid_run, tmp_path):
    from facefair.audit.card import model_card
    from facefair.run import Run

    root, *_ = hybrid_run
    run = Run(tmp_path / "run")
    shutil.copytree(tiny_run, run.folder)
    before = run.report()["headline"]
    done = subprocess.run([sys.executable, "-m", "facefair", "face-heads", str(run.folder), "--weights", "race=1",
                           "--cache-dir", str(root / "cache"), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = run.report()
    assert report["face_heads"]["cnn_only"]["headline"] == before
    assert report["headline"]["race_accuracy"] != before["race_accuracy"]
    assert report["headline"]["gender_accuracy"] == before["gender_accuracy"]   # no gender head
    assert report["history"] and (run.eval_dir("test-cnn-only") / "predictions.csv").is_file()
    assert "was (CNN alone): " in done.stdout
    assert "**Face heads:** race (" in model_card(run.folder, n_boot=50)


@pytest.mark.parametrize("name", ["utkface-cpu.yaml", "utkface-cpu-robust.yaml", "utkface-cpu-transfer.yaml"])
def test_shipped_configs_load_and_the_transfer_recipe_is_the_robust_one_plus_face_heads(name):
    from pathlib import Path

    from facefair.config import load_yaml_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    config = load_yaml_config(configs / name)
    if name == "utkface-cpu-transfer.yaml":
        robust = load_yaml_config(configs / "utkface-cpu-robust.yaml")
        assert config.train.face_heads == {"race": 1.0, "gender": 0.5}
        assert config.augment == robust.augment and config.model == robust.model


def test_train_refuses_bad_face_heads_before_the_first_epoch(utk_sample, tmp_path):
    from facefair.config import DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    from facefair.train.loop import Trainer

    for weights, message in (({"age": 1.0}, "classification tasks only"), ({"race": 0.0}, r"must be in \(0, 1\]")):
        config = RunConfig(
            data=DataConfig(data=str(utk_sample), cache_dir=str(tmp_path / "cache"), workers=1),
            model=ModelConfig(backbone="mobilenetv2", image_size=32, tasks=["race", "age"]),
            train=TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, progress=False, tensorboard=False,
                              face_heads=weights))
        with pytest.raises(ValueError, match=message):
            Trainer(config)
        assert not (tmp_path / "run" / "model.safetensors").exists()


def test_face_heads_on_a_finished_run_reuse_the_cnns_saved_test_outputs(tiny_run, hybrid_run, tmp_path, monkeypatch):
    import facefair.data.prepare as preparing
    import facefair.evaluate.report as evaluation
    from facefair.run import Run
    from facefair.table import read_predictions
    from facefair.train.face_heads import attach_to_run

    root, *_ = hybrid_run
    run = Run(tmp_path / "run")
    shutil.copytree(tiny_run, run.folder)
    cnn_table = read_predictions(run.predictions_path)
    passes: list[int] = []
    monkeypatch.setattr(evaluation, "predict_batches", lambda model, batches, n_rows, *a, **k: passes.append(n_rows))
    prepared: list[tuple] = []
    monkeypatch.setattr(preparing, "prepare_data", lambda *a, **k: prepared.append(a) or pytest.fail("images read"))
    listings, list_dataset = [], preparing.load_table
    monkeypatch.setattr(preparing, "load_table", lambda *a, **k: listings.append(a) or list_dataset(*a, **k))
    report = attach_to_run(str(run.folder), {"race": 1.0}, cache_dir=str(root / "cache"), progress=False)
    assert passes == [] and prepared == []  # neither the CNN nor the image cache was needed
    assert len(listings) == 1  # the heads' rows and the reuse check share one listing of the dataset
    blended = read_predictions(run.predictions_path)
    assert list(blended.columns) == list(cnn_table.columns) and blended["path"].equals(cnn_table["path"])
    # Gender has no head, so its answers are the CNN's to the digit; race is the head's.
    assert blended["gender_pred"].tolist() == cnn_table["gender_pred"].tolist()
    np.testing.assert_allclose(blended["age_pred"], cnn_table["age_pred"], rtol=1e-6)
    assert report["face_heads"]["cnn_only"]["headline"]["race_accuracy"] != report["headline"]["race_accuracy"]

    # A saved table that no longer matches the test split's rows is not trusted: the CNN runs again.
    kept = run.eval_dir("test-cnn-only") / run.predictions_path.name
    read_predictions(kept).head(3).to_csv(kept, index=False)
    monkeypatch.undo()
    forward = evaluation.predict_batches
    monkeypatch.setattr(evaluation, "predict_batches",
                        lambda model, batches, n_rows, *a, **k: passes.append(n_rows) or forward(model, batches, n_rows,
                                                                                                   *a, **k))
    attach_to_run(str(run.folder), {"race": 1.0}, cache_dir=str(root / "cache"), progress=False)
    assert passes == [len(cnn_table)]


def test_without_dlib_the_face_embedder_names_the_install_step(monkeypatch):
    from facefair.align.detectors import DLIB_INSTALL, MissingBackend
    from facefair.models.face_features import FaceEmbedder

    monkeypatch.setitem(sys.modules, "dlib", None)  # what an environment without dlib gives
    with pytest.raises(MissingBackend, match="need dlib") as stopped:
        FaceEmbedder()
    assert DLIB_INSTALL in str(stopped.value)
