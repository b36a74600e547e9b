"""Shared fixtures.  Real data lives beside the repo in ../shared/data (never copied in);
tests that need it skip with the reason when it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEFAIR_SHARED_DATA", REPO.parent / "shared" / "data"))
UTKFACE = SHARED_DATA / "utkface" / "UTKFace"
FAIRFACE = SHARED_DATA / "fairface"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FACEFAIR_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    return _need(UTKFACE)


@pytest.fixture(scope="session")
def fairface_dir() -> Path:
    return _need(FAIRFACE)


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    from facefair.models.backbones import resolve_weights
    try:
        return resolve_weights("local:mobilenet_v2")
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def utk_sample(utkface_dir, tmp_path_factory) -> Path:
    """A small UTKFace folder (real images, copied into a temp dir) balanced over race and gender."""
    out = tmp_path_factory.mktemp("utk_sample")
    by_group: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(utkface_dir.iterdir()):
        parts = path.name.split("_")
        if len(parts) == 4 and parts[0].isdigit():
            by_group.setdefault((parts[1], parts[2]), []).append(path)
    for files in by_group.values():
        step = max(1, len(files) // 30)
        for path in files[::step][:30]:
            shutil.copy(path, out / path.name)
    return out


@pytest.fixture(scope="session")
def tiny_run(utk_sample, tmp_path_factory) -> Path:
    """A finished (tiny, barely trained) run on real faces: best.pt, predictions.csv, report.json.
    For tests of what comes after training (audit, export, serving), not of accuracy."""
    from facefair.config import DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    from facefair.train.loop import train

    root = tmp_path_factory.mktemp("tiny_run")
    config = RunConfig(
        data=DataConfig(data=str(utk_sample), cache_dir=str(root / "cache"), workers=1),
        model=ModelConfig(backbone="mobilenetv2", image_size=48),
        train=TrainConfig(out_dir=str(root / "run"), epochs=1, batch_size=32, progress=False, tensorboard=False,
                          tta=False))
    train(config)
    return root / "run"


@pytest.fixture(scope="session")
def hybrid_run(utk_sample, tmp_path_factory):
    """A tiny run trained with ``train.face_heads`` (real faces): race from the face head alone,
    gender half and half."""
    from facefair.config import DataConfig, RunConfig, TrainConfig
    from facefair.models.multitask import ModelConfig
    from facefair.train.loop import train

    root = tmp_path_factory.mktemp("hybrid_run")
    config = RunConfig(
        data=DataConfig(data=str(utk_sample), cache_dir=str(root / "cache"), workers=1),
        model=ModelConfig(backbone="mobilenetv2", image_size=48, tasks=["gender", "race", "age"]),
        train=TrainConfig(out_dir=str(root / "run"), epochs=1, batch_size=32, progress=False, tensorboard=False,
                          tta=False, face_heads={"race": 1.0, "gender": 0.5}))
    # Every network pass over a split, by its size: training's end must run the CNN over the test
    # split once, for the CNN-only report and the blend alike.
    import facefair.evaluate.report as evaluation

    passes: list[int] = []
    forward = evaluation.predict_batches

    def counted(model, batches, n_rows, *args, **kwargs):
        passes.append(n_rows)
        return forward(model, batches, n_rows, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "predict_batches", counted)
        report = train(config)
    return root, report, passes
