"""``facefair card``: the Hugging Face model card, every figure taken from report.json + audit.json."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from facefair.audit.card import CARD_NAME, write_model_card
from facefair.cli import main
from test_audit_bootstrap import synthetic


def _fake_run(tmp_path):
    run = tmp_path / "fake-run"
    run.mkdir()
    frame = synthetic(400, seed=2)
    frame.to_csv(run / "predictions.csv", index=False)
    report = {"metrics": {}, "run": {"split_sizes": {"train": 1600, "val": 200, "test": 400}, "best_epoch": 3,
                                     "epochs": 4, "device": "cpu"},
              "config": {"data": {"data": "/nowhere/UTKFace"}, "model": {"backbone": "mobilenetv2", "image_size": 112},
                         "train": {"seed": 7, "tta": False, "method": "erm"}},
              "data_problems": {"count": 2, "items": []}, "skipped_images": {"count": 0, "items": []}}
    (run / "report.json").write_text(json.dumps(report))
    return run


def _metadata(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_is_generated_from_the_report_and_the_audit(tmp_path, capsys):
    run = _fake_run(tmp_path)
    assert main(["card", str(run), "--n-boot", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(run / CARD_NAME)
    text = (run / CARD_NAME).read_text()
    audit = json.loads((run / "audit" / "audit.json").read_text())  # the audit was run because it was missing
    meta = _metadata(text)
    results = {r["task"]["name"]: r for r in meta["model-index"][0]["results"]}
    accuracy = audit["overall"]["gender"]["accuracy"]
    assert results["Gender classification"]["metrics"][0]["value"] == pytest.approx(accuracy["value"], abs=1e-4)
    assert meta["datasets"] == ["UTKFace"] and meta["library_name"] == "timm"
    for heading in ("## Model details", "### Intended uses", "### Out-of-scope uses", "## Training data",
                    "## Evaluation", "### Per group", "## Fairness: the audit's largest gaps", "## Limitations"):
        assert heading in text, heading
    # Overall and per-group figures with the audit's CIs.
    low, high = accuracy["ci_low"], accuracy["ci_high"]
    assert f"| gender | accuracy | {accuracy['value']:.3f} [{low:.3f}, {high:.3f}]" in text
    black = next(r for r in audit["group_metrics"] if r["task"] == "gender" and r["attribute"] == "race"
                 and r["group"] == "Black" and r["metric"] == "accuracy")
    assert f"| race | Black | {black['n']} | {black['value']:.3f} [" in text
    assert audit["summary"] in text
    gap = max((g for g in audit["gaps"] if g["metric"] == "accuracy_difference" and g["value"] is not None
               and g["class"] is None), key=lambda g: g["value"])
    assert f"| {gap['task']} | {gap['attribute']} | accuracy_difference | {gap['value']:.3f}" in text
    assert "0-2-year-old" in text and "Label noise" in text
    assert "seed 7" in text and "test-time mirroring off" in text and "4 epochs (best epoch 3)" in text
    assert "Data problems reported while reading:** 2" in text
    assert "Training-split group counts are not available" in text  # the dataset is not on this machine


def test_card_counts_the_training_groups_of_a_real_run(tiny_run, tmp_path):
    path = write_model_card(tiny_run, tmp_path, n_boot=20)
    text = path.read_text()
    splits = pd.read_csv(tiny_run / "splits.csv")
    n_train = int((splits.split == "train").sum())
    assert f"Group counts of the training split ({n_train} training faces)" in text
    line = next(line for line in text.splitlines() if line.startswith("- **gender:**"))
    counts = dict(part.rsplit(" ", 1) for part in line.split(":** ")[1].split(", "))
    assert sum(int(v) for v in counts.values()) == n_train
    assert "1 epoch (best epoch 1)" in text   # one epoch, not "1 epochs"


def test_card_needs_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="report.json"):
        write_model_card(tmp_path)


def test_card_out_is_a_folder_like_every_other_out(tmp_path, capsys):
    # Issue 32: `card RUN --out DIR` crashed with IsADirectoryError.
    run = _fake_run(tmp_path)
    folder = tmp_path / "cards"
    folder.mkdir()
    assert main(["card", str(run), "--out", str(folder), "--n-boot", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(folder / CARD_NAME)
    assert (folder / CARD_NAME).read_text().startswith("---\n")


def test_card_never_overwrites_a_file_silently(tmp_path, capsys):
    # Issue 32: `card RUN --out existing.txt` overwrote the file.
    run = _fake_run(tmp_path)
    taken = tmp_path / "existing.txt"
    taken.write_text("my notes\n")
    assert main(["card", str(run), "--out", str(taken), "--n-boot", "0"]) == 2
    assert taken.read_text() == "my notes\n" and "is a file" in capsys.readouterr().err
    # A card already there (perhaps edited by hand) is kept unless --overwrite.
    (run / CARD_NAME).write_text("edited by hand\n")
    assert main(["card", str(run), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and str(run / CARD_NAME) in err and len(err.splitlines()) == 1
    assert (run / CARD_NAME).read_text() == "edited by hand\n"
    assert main(["card", str(run), "--n-boot", "0", "--overwrite"]) == 0
    assert (run / CARD_NAME).read_text().startswith("---\n")
