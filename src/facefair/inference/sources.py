"""What a model can be asked about: a folder of images, a CSV with an image column, one image, or
(with ``detect``) raw photos in any of those, in; the predictions table out.

This is the one entry point every command that predicts on new images goes through
(``facefair predict``, ``evaluate --data ... --detect``, the Python API's ``Model.predict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from facefair.inference.settings import DEFAULTS, InferenceSettings

if TYPE_CHECKING:
    import pandas as pd


def list_images(source: str | Path, image_root: Optional[str | Path] = None) -> list[str]:
    """The image paths a source names: every image under a folder (recursively, sorted), the image
    column of a CSV (relative paths resolved against ``image_root``, else the CSV's folder), or the
    one image given."""
    from facefair.data.readers import IMAGE_EXTENSIONS, detect_columns, read_csv_table

    source = Path(source)
    if source.is_dir():
        # A broken symbolic link is listed too: it gets a row whose error names the missing target,
        # instead of vanishing from the output without a word.
        return sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                      and (p.is_file() or p.is_symlink()))
    if not source.exists():
        raise FileNotFoundError(f"{source} not found: give a folder of images, a CSV with an image column, "
                                f"or one image")
    if source.suffix.lower() == ".csv":
        frame = read_csv_table(source)
        try:
            column = detect_columns(frame.columns)["path"]
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
        root = Path(image_root) if image_root else source.parent
        return [p if Path(p).is_absolute() else str(root / p) for p in frame[column]]
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        return [str(source)]
    raise ValueError(f"{source}: give a folder of images, a CSV with an image column, or one image")


@dataclass
class Predictions:
    """What :func:`predict_paths` gives back."""

    #: One row per image (cropped faces) or per face found (photos): the predictions table.
    frame: "pd.DataFrame"
    #: Photos without a usable face, with the reason (``detect`` only; None for cropped faces).
    no_face: "Optional[pd.DataFrame]" = None


def load_model(checkpoint, settings: InferenceSettings = DEFAULTS, *, trust_checkpoint: bool = False):
    """A run folder, ``.pt`` or exported model folder -> the model in eval mode on ``settings.device``,
    with ``trained_bf16``: whether its run trained it under bfloat16 autocast (what the default
    precision follows; False when the folder keeps no training config, e.g. an export)."""
    from facefair.models.multitask import load_model as load
    from facefair.runtime import select_device

    device = select_device(settings.device)
    model = load(checkpoint, device, trust_checkpoint=trust_checkpoint).to(device).eval()
    model.trained_bf16 = trained_bf16(checkpoint)
    return model


def trained_bf16(checkpoint) -> bool:
    """Whether the run ``checkpoint`` belongs to (its folder, or the folder of its ``.pt``) trained
    with ``train.bf16``; False when there is no readable training config beside it (an export)."""
    from facefair.run import Run

    path = Path(checkpoint)
    run = Run(path if path.is_dir() else path.parent)
    if not run.is_training_run():
        return False
    try:
        return bool(run.config().train.bf16)
    except (OSError, ValueError):
        return False


def predict_paths(model, paths: list[str], settings: InferenceSettings = DEFAULTS, *,
                  detect: "Optional[str]" = None, detect_workers: int = 1, decode_workers: Optional[int] = None,
                  save_chips: Optional[str | Path] = None, progress: bool = True) -> Predictions:
    """Predict image files with a loaded ``model`` on its device.

    Parameters
    ----------
    model : MultiTaskModel
        From :func:`load_model` (any registered architecture).
    paths : list of str
        Cropped faces, or raw photos with ``detect``.
    settings : InferenceSettings
        Defaults: :data:`facefair.inference.settings.DEFAULTS`.
    detect : str, optional
        A detector backend (``auto``, ``dlib``, ``dlib-hog``, ``mtcnn``): find, align and predict
        every face of each photo.  None: each image is one cropped face.
    detect_workers, decode_workers : int
        Detector processes (MTCNN on a GPU: 1), image-decoding processes (cropped faces).
    save_chips : path, optional
        With ``detect``: also write each aligned chip there.
    """
    from facefair.inference.engine import model_device, predict_files

    if detect is None:
        return Predictions(predict_files(model, paths, settings, workers=decode_workers, progress=progress))
    from facefair.inference.photos import detector_config, predict_photos_detailed

    device = model_device(model)
    detector = detector_config(detect, device, settings)
    # MTCNN is torch: on a GPU it runs in this process, next to the model.
    workers = 1 if detector.backend == "mtcnn" and device.type == "cuda" else detect_workers
    frame, no_face = predict_photos_detailed(model, paths, detector, settings, workers=workers, chip_dir=save_chips,
                                             progress=progress)
    return Predictions(frame, no_face)


def predict_source(model, source: str | Path, settings: InferenceSettings = DEFAULTS, *,
                   image_root: Optional[str | Path] = None, **options) -> Predictions:
    """:func:`list_images` then :func:`predict_paths` (``options``: its keyword arguments)."""
    paths = list_images(source, image_root)
    if not paths:
        raise ValueError(f"no images found in {source}")
    return predict_paths(model, paths, settings, **options)
