"""benchmarks/gpu_pack.py: what a GPU call carries must fit its limit beside the repo, keep the
labels that live in UTKFace file names, and say how much of the data it kept."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_pack  # noqa: E402


def _faces(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        pixels = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)  # noise: every face costs bytes
        name = f"{20 + i % 50}_{i % 2}_{i % 5}_2017010{i:010d}.jpg.chip.jpg"
        Image.fromarray(pixels).save(folder / name, quality=90)
        names.append(name)
    return names


def test_the_pack_fits_its_limit_and_keeps_labelled_names(tmp_path):
    names = _faces(tmp_path / "utk", 60)
    torch.save({"features.0.weight": torch.randn(32, 3, 3, 3), "steps": torch.tensor(3)}, tmp_path / "w.pth")
    repo = tmp_path / "repo"  # a checkout of its own, so the test does not depend on this one's size
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "tracked.bin").write_bytes(b"x" * 300_000)
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_bytes(b"x" * 5_000_000)  # ignored: does not travel
    tree = gpu_pack.travelling_bytes(repo, tmp_path / "pack") / 2**20
    assert 0.29 < tree < 0.3
    # room beside the tree for about a third of the faces (each about 10 KiB at 112 px)
    limit = tree + 0.01 + 0.2
    args = ["--data", str(tmp_path / "utk"), "--out", str(tmp_path / "pack"), "--repo", str(repo),
            "--weights", str(tmp_path / "w.pth"), "--limit-mib", str(limit), "--margin-mib", "0"]
    assert gpu_pack.main(args) == 0
    pack = tmp_path / "pack"
    manifest = json.loads((pack / "manifest.json").read_text())
    carried = (pack / "UTKFace.zip").stat().st_size + (pack / "mobilenet_v2-fp16.pth").stat().st_size
    assert carried <= (limit - tree) * 2**20
    kept = [Path(n).name for n in zipfile.ZipFile(pack / "UTKFace.zip").namelist()]
    assert 5 < len(kept) < 60 and manifest["kept_images"] == len(kept) and manifest["source_images"] == 60
    assert set(kept) <= set(names)
    with zipfile.ZipFile(pack / "UTKFace.zip") as archive, archive.open(f"UTKFace/{kept[0]}") as face:
        assert Image.open(face).size == (112, 112)
    weights = torch.load(pack / "mobilenet_v2-fp16.pth", weights_only=True)
    assert weights["features.0.weight"].dtype == torch.float16 and weights["steps"].dtype == torch.int64
    with pytest.raises(SystemExit, match="not one face fits"):
        gpu_pack.main(args[:-4] + ["--limit-mib", str(tree + 0.006), "--margin-mib", "0"])
