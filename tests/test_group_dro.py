"""Group DRO: the weights climb towards the group the model serves worst, the loss is the
q-weighted mean of group losses, and the weights survive --resume and reach the report."""

import json

import pytest
import torch

from facefair.config import DataConfig, RunConfig, TrainConfig
from facefair.mitigate.group_dro import batch_group_losses, dro_row_weights, update_group_weights
from facefair.models.multitask import ModelConfig
from facefair.train.checkpoint import load_checkpoint
from facefair.train.loop import Trainer


def _config(data, root, **train):
    options = train.pop("method_options", {"task": "gender", "step_size": 0.5})
    return RunConfig(
        data=DataConfig(data=str(data), cache_dir=str(root / "cache"), workers=1, limit=64),
        model=ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
        train=TrainConfig(**{"out_dir": str(root / "dro"), "epochs": 1, "batch_size": 16, "method": "group_dro",
                             "group_by": ["race", "gender"], "method_options": options, "progress": False,
                             "tensorboard": False, "tta": False, "amp": False, "channels_last": False, **train}))


def test_weights_move_towards_the_worst_group_and_the_loss_is_their_mixture():
    q = torch.full((3,), 1 / 3)
    losses, counts = batch_group_losses(torch.tensor([0.2, 0.4, 2.0, 0.1, 9.0]),
                                        torch.tensor([0, 0, 1, 1, -1]), 3)
    assert torch.allclose(losses, torch.tensor([0.3, 1.05, 0.0])) and counts.tolist() == [2, 2, 0]
    new = update_group_weights(q, losses, counts, step_size=1.0, bonus=torch.zeros(3))
    assert new.sum() == pytest.approx(1.0) and new[1] > new[0]
    # a group absent from the batch is not moved by it: its log-weight stays where it was
    assert torch.log(new[2]) - torch.log(new[0]) == pytest.approx(float(torch.log(q[2]) - torch.log(q[0]) - 0.3))
    # the generalisation adjustment favours the smaller group at equal loss
    bonus = 1.0 / torch.sqrt(torch.tensor([1000.0, 10.0, 10.0]))
    tied = update_group_weights(q, torch.tensor([1.0, 1.0, 0.0]), counts, 1.0, bonus)
    assert tied[1] > tied[0]

    per_row = torch.tensor([0.2, 0.4, 2.0, 0.1, 0.7])
    groups = torch.tensor([0, 0, 1, 1, -1])
    losses, counts = batch_group_losses(per_row, groups, 3)
    weights = dro_row_weights(new, groups, counts)
    mixture = float((new[:2] * losses[:2]).sum() / new[:2].sum())
    grouped = groups >= 0
    assert float((weights[grouped] * per_row[grouped]).sum() / weights[grouped].sum()) == pytest.approx(mixture)
    assert weights[4] == pytest.approx(float(weights[grouped].mean()))  # ungrouped row: an average row


def test_group_dro_trains_resumes_and_reports(utk_sample, tmp_path):
    trainer = Trainer(_config(utk_sample, tmp_path))
    method = trainer.method
    assert len(method.names) == 10 and torch.allclose(method.q, torch.full((10,), 0.1))
    report = trainer.fit()
    assert report["run"]["method"]["task"] == "gender"
    saved = json.loads((tmp_path / "dro" / "report.json").read_text())["run"]["method"]["final_group_weights"]
    assert set(saved) == set(method.names) and sum(saved.values()) == pytest.approx(1.0)
    assert max(saved.values()) > 0.1 + 1e-4  # the weights moved off uniform
    assert "train_dro_max_weight" in report["history"][0]

    state = load_checkpoint(tmp_path / "dro" / "last.pt", torch.device("cpu"))
    assert state["method_state"]["names"] == method.names
    resumed = Trainer(_config(utk_sample, tmp_path, resume=True))
    assert torch.allclose(resumed.method.q, torch.full((10,), 0.1))
    resumed.resume()
    assert resumed.method.q.tolist() == pytest.approx(list(saved.values()))


def test_group_dro_rejects_bad_settings(utk_sample, tmp_path):
    with pytest.raises(ValueError, match="not a classification task"):
        Trainer(_config(utk_sample, tmp_path, method_options={"task": "age"}))
    with pytest.raises(ValueError, match="unknown --method-options"):
        Trainer(_config(utk_sample, tmp_path, method_options={"stepsize": 0.1}))
    with pytest.raises(ValueError, match="needs --group-by"):
        Trainer(_config(utk_sample, tmp_path, group_by=[]))
