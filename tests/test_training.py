"""Training on real UTKFace faces: a 1-epoch smoke run, resume after a kill, bad images, NaN loss."""

import json
import shutil

import pandas as pd
import pytest
import torch

from facefair.cli import main
from facefair.config import DataConfig, RunConfig, TrainConfig
from facefair.models.multitask import ModelConfig, load_model
from facefair.train.loop import Trainer, TrainingDiverged, train


def _config(data, tmp_path, name="run", **train_overrides) -> RunConfig:
    return RunConfig(
        data=DataConfig(data=str(data), cache_dir=str(tmp_path / "cache"), workers=1),
        model=ModelConfig(backbone="mobilenetv2", image_size=48, dropout=0.0),
        train=TrainConfig(**{"out_dir": str(tmp_path / name), "epochs": 1, "batch_size": 32, "lr": 1e-3,
                             "progress": False, "tensorboard": False, "tta": False, **train_overrides}))


def _fit_killed_at(trainer: Trainer, epoch: int, monkeypatch) -> None:
    """``trainer.fit()`` killed as epoch ``epoch`` (0-based) starts: the epochs before it are on disk."""
    real_epoch = trainer.train_epoch
    monkeypatch.setattr(trainer, "train_epoch",
                        lambda e: (_ for _ in ()).throw(KeyboardInterrupt) if e == epoch else real_epoch(e))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def test_one_epoch_smoke_run_on_real_faces(utk_sample, tmp_path, mobilenet_weights):
    config = _config(utk_sample, tmp_path)
    config.model.weights = str(mobilenet_weights)
    report = train(config)
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "last.pt", "report.json", "predictions.csv", "splits.csv", "config.yaml",
                 "confusion_matrix_gender.csv", "confusion_matrix_race.csv", "gender_fpr_fnr_by_race.csv"):
        assert (run / name).exists(), name
    metrics = report["metrics"]
    assert set(metrics) == {"gender", "race", "age_group", "age"}
    assert 0 <= metrics["gender"]["accuracy"] <= 1 and metrics["age"]["mae"] > 0
    predictions = pd.read_csv(run / "predictions.csv")
    probs = predictions[[c for c in predictions if c.startswith("race_prob_")]]
    assert len(probs.columns) == 5 and ((probs.sum(axis=1) - 1).abs() < 1e-3).all()
    assert len(predictions) == report["run"]["split_sizes"]["test"]
    bench = pd.read_csv(tmp_path / "benchmark_results.csv")
    assert len(bench) == 1 and bench["backbone"].iloc[0] == "mobilenetv2" and "gender_accuracy" in bench
    fairness = pd.read_csv(run / "gender_fpr_fnr_by_race.csv")
    assert {"race", "fpr_male_as_female", "fnr_female_as_male", "n"} <= set(fairness.columns)


def test_resume_after_kill_in_the_cosine_phase_matches_uninterrupted_run(utk_sample, tmp_path, monkeypatch):
    # 2 epochs of 2 steps, warm-up 1 step: the kill after epoch 1 lands mid-decay (lr below its peak).
    def config(name, **overrides):
        c = _config(utk_sample, tmp_path, name, epochs=2, deterministic=True, warmup_epochs=0.5, **overrides)
        c.data.limit, c.model.image_size = 120, 32
        return c

    train(config("straight"))
    trainer = Trainer(config("interrupted"))
    real_epoch = trainer.train_epoch

    def killed(epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # as a kill: epoch 1's last.pt is on disk, epoch 2 never finishes
        return real_epoch(epoch)

    monkeypatch.setattr(trainer, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    saved = torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)  # no pickle needed
    assert saved["epoch"] == 0
    assert 0 < saved["history"][0]["lr"] < 1e-3 and saved["scheduler"]["last_epoch"] > 1  # past warm-up
    Trainer(config("interrupted", resume=True)).fit()
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["model_state"].items():
        assert torch.allclose(value.float(), b["model_state"][key].float(), atol=1e-5), key
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    assert abs(a["history"][1]["train_loss"] - b["history"][1]["train_loss"]) < 1e-5
    assert a["history"][1]["lr"] == pytest.approx(b["history"][1]["lr"])

    # Resuming with settings that change the run is refused, naming each difference; --force overrides.
    changed = config("interrupted", resume=True, lr=2e-3)
    changed.augment.flip = False
    with pytest.raises(ValueError, match="--force") as refused:
        Trainer(changed).fit()
    assert "train.lr: 0.001 -> 0.002" in str(refused.value) and "augment.flip: True -> False" in str(refused.value)
    changed.train.force, changed.train.epochs = True, 2
    Trainer(changed).fit()  # already at its last epoch: only the final evaluation runs


def test_ema_weights_are_the_ones_validated_saved_and_resumed(utk_sample, tmp_path, monkeypatch):
    from facefair.models.serialization import read_checkpoint
    from facefair.train import loop as training_loop

    def config(name, **overrides):
        c = _config(utk_sample, tmp_path, name, **{"epochs": 2, "deterministic": True, "warmup_epochs": 0.5,
                                                    "ema_decay": 0.9, **overrides})
        c.data.limit, c.model.image_size = 120, 32
        return c

    # Every epoch scores higher than the last, so the kept model is the final epoch's.
    scores = iter(range(100))
    monkeypatch.setattr(training_loop, "selection_score", lambda metrics: next(scores))
    report = train(config("straight"))
    assert report["run"]["best_epoch"] == 2
    last = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert last["ema_steps"] > 0
    kept = read_checkpoint(tmp_path / "straight")["model_state"]
    # The run keeps the moving average, not the last step's weights.
    weight = next(k for k in kept if k.endswith("weight") and kept[k].ndim == 4)
    assert not torch.allclose(last["model_state"][weight].float(), last["ema_state"][weight].float())
    assert all(torch.equal(kept[k], last["ema_state"][k]) for k in kept)

    # Killed after epoch 1 and resumed: the average carries on where it was.
    _fit_killed_at(Trainer(config("interrupted")), 1, monkeypatch)
    Trainer(config("interrupted", resume=True)).fit()
    resumed = torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)
    assert resumed["ema_steps"] == last["ema_steps"]
    for key, value in last["ema_state"].items():
        assert torch.allclose(value.float(), resumed["ema_state"][key].float(), atol=1e-5), key


def test_swa_holds_the_lr_averages_the_last_epochs_and_recomputes_batchnorm(utk_sample, tmp_path, monkeypatch):
    from facefair.models.serialization import read_checkpoint
    from facefair.train import loop as training_loop

    def config(name, **overrides):
        c = _config(utk_sample, tmp_path, name, **{"epochs": 3, "deterministic": True, "warmup_epochs": 0.5,
                                                    "swa_epochs": 2, "swa_lr_scale": 0.2, **overrides})
        c.data.limit, c.model.image_size = 120, 32
        return c

    scores = iter(range(100))
    monkeypatch.setattr(training_loop, "selection_score", lambda metrics: next(scores))
    trainer = Trainer(config("straight"))
    real_epoch, weights = trainer.train_epoch, []

    def epoch_and_snapshot(epoch):
        stats = real_epoch(epoch)
        weights.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        return stats

    monkeypatch.setattr(trainer, "train_epoch", epoch_and_snapshot)
    report = trainer.fit()
    assert report["run"]["best_epoch"] == 3
    # The cosine ends after epoch 1 (3 - 2 SWA epochs) and the rate is then held at 0.2 x lr.
    assert [h["lr"] for h in report["history"]] == pytest.approx([2e-4] * 3)
    kept = read_checkpoint(tmp_path / "straight")["model_state"]
    # The kept weights are the mean of epochs 2 and 3, not of epoch 1 and not the last epoch's ...
    conv = next(k for k in kept if k.endswith("weight") and kept[k].ndim == 4)
    assert torch.allclose(kept[conv].float(), (weights[1][conv].float() + weights[2][conv].float()) / 2, atol=1e-6)
    assert not torch.allclose(kept[conv].float(), weights[2][conv].float())
    # ... and its BatchNorm statistics were recomputed for the averaged weights, not carried over.
    stats = next(k for k in kept if k.endswith("running_mean"))
    assert not torch.allclose(kept[stats], weights[2][stats]) and not torch.allclose(kept[stats], weights[1][stats])
    last = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert int(last["swa_state"]["n_averaged"]) == 2

    # Killed after epoch 2 (one epoch averaged) and resumed: the average carries on where it was.
    _fit_killed_at(Trainer(config("interrupted")), 2, monkeypatch)
    assert int(torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)["swa_state"]["n_averaged"]) == 1
    Trainer(config("interrupted", resume=True)).fit()
    resumed = torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)
    for key, value in last["swa_state"].items():
        assert torch.allclose(value.float(), resumed["swa_state"][key].float(), atol=1e-5), key


def test_resume_force_adding_a_weight_average_starts_it_instead_of_failing(utk_sample, tmp_path):
    def config(name, **overrides):
        c = _config(utk_sample, tmp_path, name, **{"epochs": 2, "warmup_epochs": 0.5, **overrides})
        c.data.limit, c.model.image_size = 120, 32
        return c

    for name, added, key in (("swa", {"swa_epochs": 1}, "swa_state"), ("ema", {"ema_decay": 0.9}, "ema_state")):
        train(config(name))  # no average in its last.pt
        report = train(config(name, epochs=3, resume=True, force=True, **added))
        assert len(report["history"]) == 3
        assert key in torch.load(tmp_path / name / "last.pt", weights_only=True)


@pytest.mark.parametrize("overrides, message", [
    ({"swa_epochs": 3}, "swa_epochs"), ({"swa_epochs": -1}, "swa_epochs"),
    ({"swa_epochs": 1, "swa_lr_scale": 0.0}, "swa_lr_scale"),
    ({"swa_epochs": 1, "ema_decay": 0.99}, "choose one")])
def test_a_bad_swa_setting_stops_the_run_before_the_data_is_read(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict({"train": {"epochs": 3, **overrides}})
    with pytest.raises(ValueError, match=message):
        Trainer(_config(tmp_path / "no-such-folder", tmp_path, "bad", epochs=3, **overrides))


@pytest.mark.parametrize("setting, value", [("ema_decay", 1.5), ("ema_decay", -0.1), ("mixstyle", 2.0)])
def test_a_bad_ema_or_mixstyle_setting_stops_the_run_before_the_data_is_read(tmp_path, setting, value):
    from facefair.config import RunConfig

    with pytest.raises(ValueError, match=f"train.{setting}"):
        RunConfig.from_dict({"train": {setting: value}})
    # A config built in Python is checked too: the data folder does not exist, so a check that came
    # after reading the data would fail on the folder instead.
    config = _config(tmp_path / "no-such-folder", tmp_path, "bad", **{setting: value})
    with pytest.raises(ValueError, match=f"train.{setting}"):
        Trainer(config)


def test_corrupt_truncated_and_missing_images_are_skipped_and_reported(utk_sample, tmp_path):
    data = tmp_path / "faces"
    shutil.copytree(utk_sample, data)
    files = sorted(data.iterdir())
    truncated = files[0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    not_an_image = files[1]
    not_an_image.write_text("this is not a jpeg")
    rows = pd.DataFrame({"file": [f.name for f in files] + ["vanished.jpg"],
                         "gender": [f.name.split("_")[1] for f in files] + ["0"],
                         "race": [f.name.split("_")[2] for f in files] + ["1"],
                         "age": [f.name.split("_")[0] for f in files] + ["30"]})
    rows.to_csv(data / "labels.csv", index=False)
    config = _config(data / "labels.csv", tmp_path)
    report = train(config)
    skipped = " ".join(report["skipped_images"]["items"])
    assert report["skipped_images"]["count"] == 2
    assert truncated.name in skipped and not_an_image.name in skipped
    assert report["data_problems"]["count"] == 1 and "vanished.jpg" in report["data_problems"]["items"][0]


def test_reading_jpegs_without_cache_also_skips_bad_files(utk_sample, tmp_path):
    data = tmp_path / "faces"
    shutil.copytree(utk_sample, data)
    broken = sorted(data.iterdir())[5]
    broken.write_bytes(b"\xff\xd8\xff broken")
    config = _config(data, tmp_path)
    config.data.cache_dir = ""
    report = train(config)
    # Training reads every train, val and test row, so the broken file is met wherever the split put it.
    splits = pd.read_csv(tmp_path / "run" / "splits.csv")
    assert splits.astype(str).apply(lambda col: col.str.contains(broken.name, regex=False)).any().any()
    assert report["skipped_images"]["count"] == 1
    (item,) = report["skipped_images"]["items"]
    assert broken.name in item  # named, whatever the decoder says about it


def test_non_finite_loss_stops_cleanly_and_keeps_finished_work(utk_sample, tmp_path, monkeypatch):
    config = _config(utk_sample, tmp_path, epochs=2, max_bad_steps=2)
    config.data.limit = 120
    trainer = Trainer(config)
    real_epoch = trainer.train_epoch

    def poisoned(epoch):
        if epoch == 1:
            monkeypatch.setattr(trainer.loss_fn, "forward", lambda *args: (torch.tensor(float("nan")), {}))
        return real_epoch(epoch)

    trainer.train_epoch = poisoned
    with pytest.raises(TrainingDiverged, match="non-finite"):
        trainer.fit()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and (tmp_path / "run" / "model.safetensors").exists()


def test_cli_train_evaluate_predict(utk_sample, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--data", str(utk_sample), "--image-size", "48", "--epochs", "1", "--batch-size", "32",
                 "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--no-tensorboard",
                 "--tasks", "gender", "age", "--age-head", "coral", "--limit", "150"])
    assert code == 0
    assert json.loads((out / "report.json").read_text())["metrics"].keys() == {"gender", "age"}
    assert main(["evaluate", str(out), "--split", "val", "--no-tta"]) == 0
    val = json.loads((out / "eval-val" / "report.json").read_text())
    assert val["split"] == "val" and val["metrics"]["gender"]["n"] == len(pd.read_csv(out / "splits.csv").query("split == 'val'"))
    faces = tmp_path / "faces"
    faces.mkdir()
    for f in sorted(utk_sample.iterdir())[:5]:
        shutil.copy(f, faces / f.name)
    (faces / "broken.jpg").write_bytes(b"nope")
    assert main(["predict", str(out / "best.pt"), str(faces), "--out", str(tmp_path / "p"), "--decode-workers", "0"]) == 0
    predictions = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(predictions) == 6
    broken = predictions[predictions["path"].str.endswith("broken.jpg")].iloc[0]
    assert "unreadable" in broken["error"] and pd.isna(broken["gender_pred"])
    good = predictions[predictions["error"].isna()]
    assert good["gender_pred"].isin(["Male", "Female"]).all() and good["age_pred"].between(0, 100).all()
    model = load_model(out / "best.pt")
    assert [t.name for t in model.tasks] == ["gender", "age"]


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_evaluate_on_another_dataset_maps_labels_into_the_models_scheme(tiny_run, utk_sample, tmp_path):
    """A UTK-trained (race5) model evaluated on a FairFace-style CSV (race7 names, age groups only)."""
    files = sorted(utk_sample.iterdir())[:12]
    race7 = ["White", "Black", "East Asian", "Indian", "Latino_Hispanic", "Southeast Asian"] * 2
    pd.DataFrame({"file": [f.name for f in files], "age": ["20-29"] * 12,
                  "gender": ["Male", "Female"] * 6, "race": race7}).to_csv(tmp_path / "ff.csv", index=False)
    assert main(["evaluate", str(tiny_run), "--data", str(tmp_path / "ff.csv"), "--image-root", str(utk_sample),
                 "--kind", "fairface", "--out", str(tmp_path / "eval"), "--no-tta"]) == 0
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(predictions) == 12
    assert set(predictions["race_true"]) == {"White", "Black", "Asian", "Indian", "Others"}  # race7 -> race5
    assert predictions["age_true"].isna().all() and (predictions["age_group_true"] == "20-29").all()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["split"] == "all" and report["metrics"]["age"] == {"n": 0}
