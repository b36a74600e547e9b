"""The face-pretrained feature baseline: dlib descriptors (cached, pickle-free), heads whose
strength is chosen on validation rows, and the CLI that scores another dataset for transfer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefair.baselines import face_embedding as fe
from facefair.models import face_features
from facefair.tasks import make_tasks


@pytest.fixture(scope="module")
def few_faces(utkface_dir, tmp_path_factory) -> Path:
    """Three real faces per gender x race (30), in a temp folder."""
    out = tmp_path_factory.mktemp("few_faces")
    seen: dict[tuple[str, str], int] = {}
    for path in sorted(utkface_dir.iterdir()):
        parts = path.name.split("_")
        if len(parts) == 4 and parts[0].isdigit() and 20 <= int(parts[0]) <= 60:
            key = (parts[1], parts[2])
            if seen.get(key, 0) < 3:
                shutil.copy(path, out / path.name)
                seen[key] = seen.get(key, 0) + 1
    return out


def test_descriptors_of_real_faces_are_cached_and_name_unreadable_files(few_faces, tmp_path, monkeypatch):
    from PIL import Image, ImageOps

    paths = sorted(str(p) for p in few_faces.iterdir())[:6]
    mirrored = tmp_path / "mirrored.jpg"
    ImageOps.mirror(Image.open(paths[0])).save(mirrored, quality=95)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    first = face_features.face_descriptors(paths + [str(mirrored), str(broken)], tmp_path / "cache", progress=False)
    assert first.vectors.shape == (8, face_features.DIMENSIONS)
    assert np.isfinite(first.vectors[:7]).all() and np.isnan(first.vectors[7]).all()
    assert list(first.bad) == [str(broken)] and "broken.jpg" in first.bad[str(broken)]
    # It describes the person: the mirror image of a face is the same person (under dlib's 0.6
    # threshold) and nearer than any of the other five people.
    distance = np.linalg.norm(first.vectors[:6] - first.vectors[6], axis=1)
    assert distance[0] < 0.6 and distance[0] < distance[1:].min()
    # Cached: the second call must not load the networks at all.
    monkeypatch.setattr(face_features, "FaceEmbedder", lambda *a, **k: pytest.fail("recomputed cached descriptors"))
    again = face_features.face_descriptors(paths, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again.vectors, first.vectors[:6])
    shard = next((tmp_path / "cache" / face_features.CACHE_VERSION).glob("*.npz"))
    with np.load(shard, allow_pickle=False) as data:  # plain arrays, no pickled objects
        assert data["X"].dtype == np.float32


def _clusters(rng, classes, n, centre_scale=3.0):
    centres = rng.normal(size=(len(classes), face_features.DIMENSIONS)) * centre_scale
    labels = rng.integers(0, len(classes), size=n)
    return centres[labels] + rng.normal(size=(n, face_features.DIMENSIONS)), np.asarray(classes, dtype=object)[labels]


def test_heads_choose_strength_on_validation_and_keep_class_order():
    rng = np.random.default_rng(0)
    race = make_tasks(["race"], "race5")[0]
    x, y = _clusters(rng, race.classes, 400)
    train = pd.DataFrame({"race": y[:300], "gender": "Male"})
    val = pd.DataFrame({"race": y[300:], "gender": "Male"})
    heads, info = fe.fit_heads(train, x[:300].astype(np.float32), val, x[300:].astype(np.float32), "race5",
                               fe.EmbeddingConfig(tasks=("race",)), progress=lambda m: None)
    chosen = info["selection"]["race"]
    config = fe.EmbeddingConfig()
    assert set(chosen["val_accuracy"]) == {f"logistic C={c:g}" for c in config.c_grid} | {"mlp 256 alpha=0.01"}
    assert chosen["val_accuracy"][chosen["chosen"]] == max(chosen["val_accuracy"].values())
    assert heads.heads["race"].chosen == chosen["chosen"]
    probs = heads.outputs(np.vstack([x[300:], np.full((1, face_features.DIMENSIONS), np.nan)]).astype(np.float32))["race"]
    assert np.isnan(probs[-1]).all()  # an image without a descriptor gets no prediction
    predicted = np.asarray(race.classes, dtype=object)[probs[:-1].argmax(axis=1)]
    assert (predicted == y[300:]).mean() > 0.95
    np.testing.assert_allclose(probs[:-1].sum(axis=1), 1.0, atol=1e-5)


def test_subsample_keeps_rows_with_a_missing_label_and_the_rare_groups():
    # UTKFace has files without a race; the split's columns are categorical, where astype(str)
    # keeps NaN and stratifying on it failed ("Input contains NaN").
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(200)],
                          "gender": pd.Categorical(["Male", "Female"] * 100),
                          "race": pd.Categorical(["White"] * 150 + ["Indian"] * 46 + [None] * 4)})
    chosen = fe._subsample(frame, 50, seed=0)
    assert len(chosen) == 50 and (chosen["race"] == "Indian").sum() >= 10


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_train"):
        fe.EmbeddingConfig(max_train=1)
    with pytest.raises(ValueError, match="positive"):
        fe.EmbeddingConfig(c_grid=(0.0,))


def test_cli_writes_the_contract_and_a_transfer_report(few_faces, tmp_path):
    # Another dataset laid out as label folders (gender/race), as people keep them.
    other = tmp_path / "other"
    for i, path in enumerate(sorted(few_faces.iterdir())[:8]):
        gender = "male" if path.name.split("_")[1] == "0" else "female"
        race = ["caucasian", "black", "asian", "indian", "other"][int(path.name.split("_")[2])]
        if race == "other":
            continue
        (other / gender / race).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, other / gender / race / f"{i}.jpg")
    out = tmp_path / "face"
    done = subprocess.run(
        [sys.executable, "-m", "facefair", "face-baseline", "--data", str(few_faces), "--out", str(out),
         "--tasks", "gender", "race", "--cache-dir", str(tmp_path / "cache"), "--test-fraction", "0.3",
         "--val-fraction", "0.2", "--split-by", "gender", "--transfer", str(other), "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out / "predictions.csv")
    assert {"gender_true", "gender_pred", "gender_prob_Female", "race_pred"} <= set(table.columns)
    report = json.loads((out / "report.json").read_text())
    assert report["baseline"]["name"] == "dlib-face-embedding-logreg-mlp"
    assert (out / "eval-other" / "predictions.csv").is_file()
    assert (out / "transfer" / "transfer.html").is_file()
    assert "transfer: other" in done.stdout


def _random_cnn_table(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A predictions table in the package's layout for ``frame``, from a random "CNN"."""
    from facefair.table import predictions_frame

    tasks = make_tasks(["gender", "race"], "race5")
    rng = np.random.default_rng(seed)
    outputs = {t.name: rng.dirichlet(np.ones(t.num_classes), size=len(frame)).astype(np.float32) for t in tasks}
    return predictions_frame(frame.reset_index(drop=True), tasks, outputs)


def test_benchmark_pairs_the_lever_with_a_cnn_run_on_the_same_faces(few_faces, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import face_embedding as bench
    from facefair.data.readers import read_dataset

    names = sorted(p.name for p in few_faces.iterdir())
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"path": names, "split": [("train", "train", "train", "val", "test")[i % 5]
                                           for i in range(len(names))]}).to_csv(run / "splits.csv", index=False)
    frame = read_dataset(few_faces).frame
    test = frame[frame["path"].map(lambda p: Path(p).name).isin(names[4::5])]
    _random_cnn_table(test, 0).to_csv(run / "predictions.csv", index=False)
    other = tmp_path / "other"
    for i, name in enumerate(names[:10]):
        gender = "male" if name.split("_")[1] == "0" else "female"
        race = ["caucasian", "black", "asian", "indian", "hispanic"][int(name.split("_")[2])]
        (other / gender / race).mkdir(parents=True, exist_ok=True)
        shutil.copy(few_faces / name, other / gender / race / f"{i}.jpg")
    evaluation = tmp_path / "eval-other"
    evaluation.mkdir()
    _random_cnn_table(read_dataset(other).frame, 1).to_csv(evaluation / "predictions.csv", index=False)
    out = tmp_path / "summary.md"
    assert bench.main(["--run", str(run), "--data", str(few_faces), "--transfer-data", str(other),
                       "--transfer-eval", str(evaluation), "--seeds", "2", "--per-seed", "8", "--val", "6",
                       "--n-boot", "50", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## other" in text and "Race recall:" in text and "| face | race | accuracy |" in text
    assert "| ensemble | gender | accuracy |" in text
    draws = bench.stratified_draws(frame[frame["path"].map(lambda p: Path(p).name).isin(names[::5] + names[1::5])],
                                   2, 6)
    assert not set(draws[0]["path"]) & set(draws[1]["path"])  # disjoint seeds
