"""torchrun with 2 CPU processes (gloo) must train the same model as one process."""

import json
import subprocess
import sys

import torch
import yaml

# No augmentation and no dropout: what remains random is shared by all ranks (split, order, init).
# A ViT has LayerNorm, not BatchNorm, so half-batches per rank normalise exactly like the full batch.
NO_AUGMENT = {"augment": {"scale": [1.0, 1.0], "shift": 0.0, "rotate_degrees": 0.0, "flip": False,
                          "brightness": 0.0, "contrast": 0.0}}


def _train(command: list[str], tmp_path, name: str, data) -> dict:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(NO_AUGMENT))
    args = ["-m", "facefair", "train", "--config", str(config), "--data", str(data), "--backbone", "vit_tiny_patch16_224",
            "--image-size", "32", "--epochs", "2", "--batch-size", "32", "--limit", "200", "--dropout", "0",
            "--tasks", "gender", "race", "age", "--no-progress", "--no-tensorboard", "--no-tta", "--deterministic",
            "--workers", "1", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / name)]
    result = subprocess.run(command + args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads((tmp_path / name / "report.json").read_text())


def test_two_process_gloo_matches_single_process(utk_sample, tmp_path):
    single = _train([sys.executable], tmp_path, "single", utk_sample)
    ddp = _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
                 tmp_path, "ddp", utk_sample)
    assert ddp["run"]["processes"] == 2 and single["run"]["processes"] == 1
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=False)["model_state"]
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["model_state"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=2e-4, rtol=1e-3), key
    for epoch_single, epoch_ddp in zip(single["history"], ddp["history"]):
        assert abs(epoch_single["train_loss"] - epoch_ddp["train_loss"]) < 1e-3
        assert epoch_single["train_images"] == epoch_ddp["train_images"]
    # Both evaluated the whole test split (sharded across ranks in the DDP run).
    assert single["metrics"]["gender"]["n"] == ddp["metrics"]["gender"]["n"]
    assert abs(single["metrics"]["age"]["mae"] - ddp["metrics"]["age"]["mae"]) < 1e-2
