"""Rows missing a task's label must not touch that task's loss (merged datasets)."""

import math

import numpy as np
import pandas as pd
import torch

from facefair.models.heads import RegressionHead
from facefair.tasks import IGNORE_INDEX, encode_targets, make_tasks
from facefair.train.losses import MultiTaskLoss, inverse_frequency_weights


def _setup():
    tasks = make_tasks(["gender", "age"], None)
    heads = torch.nn.ModuleDict({"age": RegressionHead(4, 0.0)})
    return tasks, MultiTaskLoss(tasks, heads)


def test_encoding_marks_missing_labels():
    frame = pd.DataFrame({"gender": ["Male", None, "Female"], "age": [30.0, np.nan, 5.0]})
    targets = encode_targets(frame, make_tasks(["gender", "age"], None))
    assert list(targets["gender"]) == [0, IGNORE_INDEX, 1]
    assert np.isnan(targets["age"][1]) and targets["age"][2] == 5


def test_masked_rows_get_no_gradient_and_do_not_change_loss():
    tasks, loss_fn = _setup()
    logits = torch.randn(4, 2, requires_grad=True)
    age = torch.tensor([30.0, 40.0, 50.0, 60.0], requires_grad=True)
    targets = {"gender": torch.tensor([0, IGNORE_INDEX, 1, IGNORE_INDEX]), "age": torch.tensor([31.0, math.nan, math.nan, 58.0])}
    total, parts = loss_fn({"gender": logits, "age": age}, targets)
    total.backward()
    assert torch.all(logits.grad[[1, 3]] == 0) and torch.any(logits.grad[[0, 2]] != 0)
    assert age.grad[1] == 0 and age.grad[2] == 0 and age.grad[0] != 0
    # Same loss as computing on the labelled rows alone.
    expected_ce = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 1]))
    assert math.isclose(parts["gender"], float(expected_ce.detach()), rel_tol=1e-6)
    assert math.isclose(parts["age"], (1 + 2) / 2 / 10, rel_tol=1e-6)


def test_task_absent_from_whole_batch_adds_nothing():
    tasks, loss_fn = _setup()
    outputs = {"gender": torch.randn(2, 2), "age": torch.tensor([20.0, 30.0])}
    total, parts = loss_fn(outputs, {"gender": torch.tensor([IGNORE_INDEX, IGNORE_INDEX]),
                                     "age": torch.tensor([25.0, 30.0])})
    assert set(parts) == {"age"} and torch.isfinite(total)


def test_inverse_frequency_weights():
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1, IGNORE_INDEX]), 3)
    assert torch.allclose(weights, torch.tensor([4 / 6, 4 / 2, 0.0]))
