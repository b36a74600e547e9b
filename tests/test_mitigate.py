"""Bias mitigation: reweighting, balanced sampling, adversarial debiasing, FineFACE experts and
group thresholds — each trains (or applies) and changes what it should."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from facefair.cli import main
from facefair.config import DataConfig, RunConfig, TrainConfig
from facefair.data.batches import epoch_order, to_float
from facefair.data.splits import group_keys
from facefair.mitigate.adversarial import AdversarialModel, grad_reverse, joint_groups
from facefair.mitigate.fineface import (STEPS_PER_BATCH, FineFaceModel, attention_boxes, crop_resize,
                                        stage_backbone)
from facefair.mitigate.thresholds import (GroupThresholds, apply_group_thresholds, binary_summary,
                                          fit_group_thresholds)
from facefair.models.backbones import create_backbone
from facefair.models.multitask import ModelConfig, load_model
from facefair.tasks import make_tasks
from facefair.train.loop import Trainer
from facefair.train.sampling import balanced_weights

TASKS = ["gender", "race", "age_group", "age"]


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    race = rng.choice(["White", "Black", "Asian", "Indian"], size=1000, p=[0.6, 0.2, 0.15, 0.05])
    gender = rng.choice(["Male", "Female"], size=1000, p=[0.7, 0.3])
    return pd.DataFrame({"race": race, "gender": gender})


def _config(data, root, method, **overrides):
    return RunConfig(
        data=DataConfig(data=str(data), cache_dir=str(root / "cache"), workers=1, limit=64),
        model=ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
        train=TrainConfig(**{"out_dir": str(root / method), "epochs": 1, "batch_size": 16, "method": method,
                             "progress": False, "tensorboard": False, "tta": False, "amp": False,
                             "channels_last": False, **overrides}))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from more threads, and lose a lot when another process keeps
    the cores busy; the Trainer takes one thread per core, so ``_trainer`` sets it back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(config) -> Trainer:
    trainer = Trainer(config)
    torch.set_num_threads(1)
    return trainer


def _one_batch(trainer):
    split = trainer.data.splits["train"]
    images, positions, _ = next(split.batches.iterate(np.arange(trainer.batch_size)))
    targets = {k: torch.from_numpy(v)[positions] for k, v in split.targets.items()}
    return to_float(images, trainer.device), targets, positions


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _changed(before, module, prefix):
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


# ------------------------------------------------------------------ pre-processing
def test_reweight_equalises_group_mass():
    frame = _frame()
    weights = balanced_weights(frame, ["race", "gender"])
    assert weights.mean() == pytest.approx(1.0)
    mass = pd.Series(weights).groupby(group_keys(frame, ["race", "gender"]).values).sum()
    assert len(mass) == 8 and np.allclose(mass, mass.iloc[0])
    # a bigger group's rows weigh less
    keys = group_keys(frame, ["race", "gender"])
    assert weights[(keys == "White|Male").to_numpy()][0] < weights[(keys == "Indian|Female").to_numpy()][0]
    # rows without a race (UTKFace has a few) keep an average weight instead of a whole group's
    frame.loc[:1, "race"] = None
    weights = balanced_weights(frame, ["race", "gender"])
    assert np.allclose(weights[:2], 1.0) and weights[2:].mean() == pytest.approx(1.0)
    mass = pd.Series(weights[2:]).groupby(group_keys(frame, ["race", "gender"]).values[2:]).sum()
    assert len(mass) == 8 and np.allclose(mass, mass.iloc[0])


def test_balanced_sampler_draws_groups_about_equally():
    frame = _frame()
    keys = group_keys(frame, ["race", "gender"]).to_numpy()
    raw_share = pd.Series(keys).value_counts(normalize=True)
    assert raw_share.max() / raw_share.min() > 20
    order = np.concatenate([epoch_order(len(frame), e, 0, True, balanced_weights(frame, ["race", "gender"]))
                            for e in range(5)])
    share = pd.Series(keys[order]).value_counts(normalize=True)
    assert len(share) == 8 and np.allclose(share, 1 / 8, atol=0.02)


# ------------------------------------------------------------------ adversarial
def test_gradient_reversal_flips_the_gradient_sign():
    x = torch.randn(4, 6, requires_grad=True)
    (grad_reverse(x, 0.3) * torch.arange(6.0)).sum().backward()
    assert torch.allclose(x.grad, -0.3 * torch.arange(6.0).expand(4, 6))
    assert torch.equal(grad_reverse(x, 0.3), x)


def test_adversarial_and_reweight_train_steps(utk_sample, tmp_path):
    config = _config(utk_sample, tmp_path, "adversarial", group_by=["race"],
                     method_options={"adversary_weight": 0.5, "adversary_warmup": 0.0})
    trainer = _trainer(config)
    model = trainer.model
    assert isinstance(model, AdversarialModel) and len(model.groups) == 5 and "adversary" in model.describe()
    assert trainer.method.reversal(trainer) == pytest.approx(0.5, rel=1e-3)
    before = _snapshot(model)
    x, targets, positions = _one_batch(trainer)
    loss, parts, stepped = trainer.method.train_step(trainer, x, targets, positions)
    assert stepped and torch.isfinite(loss) and "adversary" in parts and parts["adversary_lambda"] > 0
    assert _changed(before, model, "adversary.") and _changed(before, model, "backbone.")
    assert set(model(x)) == set(TASKS)  # inference ignores the adversary

    with pytest.raises(ValueError, match="unknown --method-options"):
        Trainer(_config(utk_sample, tmp_path, "adversarial", method_options={"adversery_weight": 1.0}))

    trainer = _trainer(_config(utk_sample, tmp_path, "reweight", group_by=["race", "gender"]))
    x, targets, positions = _one_batch(trainer)
    weights = trainer.method.sample_weight(trainer, positions)
    frame = trainer.data.splits["train"].frame
    assert weights.shape == (len(positions),)
    expected = balanced_weights(frame, ["race", "gender"])[positions]
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float32))
    assert trainer.method.train_step(trainer, x, targets, positions)[2]


def test_joint_groups_vocabulary():
    tasks = make_tasks(["gender"], None)
    assert joint_groups(["gender"], tasks) == ["Male", "Female"]
    assert "Asian|Female" in joint_groups(["race", "gender"], tasks)        # race unknown: every scheme's classes
    assert len(joint_groups(["race"], make_tasks(["race"], "race4"))) == 4


# ------------------------------------------------------------------ FineFACE
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2"])
def test_fineface_experts_sit_on_the_last_three_stages(backbone):
    tasks = make_tasks(TASKS, "race5")
    model = FineFaceModel(ModelConfig(backbone=backbone, image_size=32), tasks, expert_width=64).eval()
    channels = create_backbone(backbone, features_only=True).feature_info.channels()[-3:]
    assert [e.block[0].in_channels for e in model.experts] == channels
    x = torch.randn(2, 3, 32, 32)
    done = model.run(x, concat=True)
    assert [m.shape[-1] for m in done.maps] == [4, 2, 1]              # strides 8, 16, 32
    out = model(x)
    assert out["gender"].shape == (2, 2) and out["race"].shape == (2, 5) and out["age_group"].shape == (2, 9)
    assert out["age"].shape == (2,)
    probs = model.predict(out)
    assert torch.allclose(probs["gender"].sum(1), torch.ones(2)) and (probs["age"] > 0).all()


def test_stage_backbone_loads_local_mobilenet_weights(mobilenet_weights):
    stages = stage_backbone("mobilenetv2", weights=mobilenet_weights)
    full = create_backbone("mobilenetv2", weights=mobilenet_weights)
    reference = full.state_dict()
    for key, value in stages.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_attention_crops_lie_inside_the_image_and_keep_its_size():
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 2] = 5.0                     # one hot spot
    maps[1] = torch.rand(4, 4)
    boxes = attention_boxes([maps], (48, 40), threshold=0.5, padding=0.1)
    assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= 40) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= 48)).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    x0, y0, x1, y1 = boxes[0].tolist()
    assert x1 - x0 < 40 and y1 - y0 < 48 and x0 < 26 < x1 and y0 < 15.7 < y1  # around the spot (x=26, y=15.7)
    assert boxes[2].tolist() == [0, 0, 40, 48]  # a constant map: the whole image
    images = torch.rand(3, 3, 48, 40)
    crops = crop_resize(images, boxes)
    assert crops.shape == images.shape
    assert torch.allclose(crops[2], images[2], atol=1e-5)  # the whole-image box is the identity
    box = torch.tensor([[8.0, 12.0, 28.0, 36.0]] * 3)      # x 8..28, y 12..36, zoomed 2x
    zoom = crop_resize(images, box)
    expected = torch.nn.functional.interpolate(images[:, :, 12:36, 8:28], size=(48, 40), mode="bilinear",
                                               align_corners=False)
    assert torch.allclose(zoom[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5)


def test_fineface_trains_five_steps_per_batch_and_round_trips(utk_sample, tmp_path, mobilenet_weights):
    config = _config(utk_sample, tmp_path, "fineface", method_options={"expert_width": 64, "cam_task": 1})
    config.model.weights = str(mobilenet_weights)
    trainer = _trainer(config)
    model = trainer.model
    assert isinstance(model, FineFaceModel) and model.cam_task == "race"
    calls = []
    step = trainer.optimizer_step
    trainer.optimizer_step = lambda loss: calls.append(float(loss.detach())) or step(loss)
    before = _snapshot(model)
    report = trainer.fit()
    batches = len(trainer.data.splits["train"].frame) // trainer.batch_size
    assert batches >= 1 and len(calls) == STEPS_PER_BATCH * batches == 5 * batches
    parts = trainer.history[0]
    for key in ("loss_expert3", "loss_expert2", "loss_expert1", "loss_attention", "loss_concat", "gender"):
        assert np.isfinite(parts[f"train_{key}"]), key
    for prefix in ("backbone.", "experts.0.", "experts.1.", "experts.2.", "concat_embed.", "heads."):
        assert _changed(before, model, prefix), prefix
    assert 0 <= report["metrics"]["gender"]["accuracy"] <= 1

    loaded = load_model(tmp_path / "fineface" / "best.pt")
    assert isinstance(loaded, FineFaceModel) and loaded.cam_task == "race" and loaded.expert_width == 64
    from safetensors.torch import load_file  # the run's best model: config.json + model.safetensors
    trained = load_file(str(tmp_path / "fineface" / "model.safetensors"))
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    out = loaded(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"gender": (2, 2), "race": (2, 5), "age_group": (2, 9),
                                                            "age": (2,)}
    assert torch.allclose(out["race"], model.eval()(x)["race"], atol=1e-5)


# ------------------------------------------------------------------ post-processing
def _scored(seed=0):
    """Group A's women score 0.30-0.45 (missed at 0.5), group B's 0.6-0.9; men score < 0.2."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, (low, high) in {"A": (0.3, 0.45), "B": (0.6, 0.9)}.items():
        for i in range(100):
            female = i % 2 == 1
            score = rng.uniform(low, high) if female else rng.uniform(0.0, 0.2)
            rows.append({"race": group, "gender_true": "Female" if female else "Male", "gender_prob_Male": 1 - score,
                         "gender_prob_Female": score, "gender_pred": "Female" if score >= 0.5 else "Male"})
    return pd.DataFrame(rows)


def test_group_thresholds_fix_the_disadvantaged_group():
    val, test = _scored(0), _scored(1)
    thresholds = fit_group_thresholds(val, "gender", "race", "equalized_odds")
    assert 0.2 < thresholds.rules["A"].threshold0 < 0.3 and thresholds.rules["B"].threshold0 > 0.2
    post = apply_group_thresholds(test, thresholds)
    women_a = (test["race"] == "A") & (test["gender_true"] == "Female")
    assert (test.loc[women_a, "gender_pred"] == "Male").all() and (post.loc[women_a, "gender_pred"] == "Female").all()
    rest = ~women_a
    assert (post.loc[rest, "gender_pred"] == test.loc[rest, "gender_pred"]).all()
    assert (post["gender_pred_raw"] == test["gender_pred"]).all()
    assert post["gender_prob_Female"].equals(test["gender_prob_Female"])
    before, after = binary_summary(test, "gender", "race", "Female"), binary_summary(post, "gender", "race", "Female")
    assert before["equalized_odds_difference"] == pytest.approx(1.0) and after["equalized_odds_difference"] == 0.0
    assert GroupThresholds.from_json(thresholds.to_json()) == thresholds
    unseen = test.assign(race="C")           # a group never fitted keeps its raw prediction
    assert (apply_group_thresholds(unseen, thresholds)["gender_pred"] == test["gender_pred"]).all()


def test_thresholds_cli_writes_post_processed_predictions(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "eval-val").mkdir(parents=True)
    _scored(0).to_csv(run / "eval-val" / "predictions.csv", index=False)
    _scored(1).to_csv(run / "predictions.csv", index=False)
    (run / "config.yaml").write_text("train:\n  tta: true\n")
    (run / "eval-val" / "report.json").write_text('{"tta": true}')
    assert main(["mitigate", "thresholds", str(run), "--task", "gender", "--attribute", "race"]) == 0
    post = pd.read_csv(run / "thresholded" / "predictions.csv")
    assert (post["gender_pred"] == post["gender_true"]).all()
    summary = json.loads((run / "thresholded" / "summary.json").read_text())
    assert summary["after"]["accuracy"] == 1.0 and summary["before"]["accuracy"] == 0.75
    assert main(["mitigate", "apply-thresholds", str(run / "thresholded" / "thresholds.json"),
                 str(run / "predictions.csv"), "--out", str(tmp_path / "again")]) == 0
    assert pd.read_csv(tmp_path / "again" / "predictions.csv")["gender_pred"].equals(post["gender_pred"])
    assert main(["mitigate", "methods"]) == 0
    assert "fineface" in capsys.readouterr().out


@pytest.mark.parametrize("run_tta,saved", [(False, True), (False, None), (True, False)])
def test_thresholds_fit_on_scores_made_the_way_the_runs_were(tmp_path, monkeypatch, run_tta, saved):
    """A --no-tta run's test scores are not mirrored-averaged: its val scores must not be either."""
    import facefair.evaluate.run as evaluate_module
    from facefair.mitigate.thresholds import threshold_run
    run = tmp_path / "run"
    (run / "eval-val").mkdir(parents=True)
    _scored(0).to_csv(run / "eval-val" / "predictions.csv", index=False)
    if saved is not None:
        (run / "eval-val" / "report.json").write_text(json.dumps({"tta": saved}))
    _scored(1).to_csv(run / "predictions.csv", index=False)
    (run / "config.yaml").write_text(f"train:\n  tta: {str(run_tta).lower()}\n")
    calls = []

    def fake_evaluate(run_dir, split, device, tta):
        calls.append((split, tta))
        (run / "eval-val" / "report.json").write_text(json.dumps({"tta": tta}))
    monkeypatch.setattr(evaluate_module, "evaluate_run", fake_evaluate)
    summary = threshold_run(run)
    assert calls == [("val", run_tta)] and summary["tta"] is run_tta
    calls.clear()
    threshold_run(run)  # now recorded as made the run's way: not made again
    assert calls == []


def test_predict_applies_group_thresholds_at_predict_time(tiny_run, utk_sample, tmp_path):
    """Thresholds fitted on a real run's validation split, applied by `facefair predict --thresholds`,
    with each face's group taken from the model's own race prediction."""
    assert main(["mitigate", "thresholds", str(tiny_run), "--task", "gender", "--attribute", "race"]) == 0
    faces = sorted(utk_sample.iterdir())[:20]
    listing = tmp_path / "faces.csv"
    pd.DataFrame({"file": [str(f) for f in faces]}).to_csv(listing, index=False)
    out = tmp_path / "post"
    assert main(["predict", str(tiny_run), str(listing), "--out", str(out),
                 "--thresholds", str(tiny_run / "thresholded" / "thresholds.json")]) == 0
    post = pd.read_csv(out / "predictions.csv")
    assert {"gender_pred", "gender_pred_raw", "race_pred"} <= set(post.columns) and len(post) == 20
    assert post["gender_pred"].isin(["Male", "Female"]).all()
