"""Detect and align every face in many photos: batch, parallel over files, with a manifest.

Each worker process builds its own detector once (dlib and torch models cannot be pickled) and
handles whole files, so the parent only collects results.  Photos are shrunk so the longer side
is at most ``max_side`` before detection, as FairFace's predict.py does (it resizes to 800 px);
boxes and landmarks are reported in the original photo's pixels, and chips are cut from the
shrunk copy, exactly as FairFace cuts them.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from facefair.align.chips import align_faces
from facefair.align.detectors import Detector, DetectorConfig, Face, make_detector, resolve_backend
from facefair.data.images import BadImage, check_size, to_rgb
from facefair.data.readers import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class AlignConfig:
    size: int = 224            # chip side in pixels (FairFace released 224; its predict.py cuts 300)
    padding: float = 0.25      # FairFace: 0.25 (and 1.25 for its wider-context release)
    max_side: int = 800        # shrink photos so the longer side is at most this before detecting; 0 = never
    min_face: int = 0          # skip faces whose box is smaller than this (shorter side, original pixels)
    quality: int = 95          # JPEG quality of written chips
    border: float = 0.0        # pad the photo by this fraction of its longer side (edge pixels repeated)
                               # before detecting: tight face crops (dataset images) leave detectors no context
    chips: bool = True         # False: detect only (cleaning needs no chips)


@dataclass
class PhotoFaces:
    """What one photo gave: faces in original pixels, their chips (unless written), or an error."""

    path: str
    width: int = 0
    height: int = 0
    faces: list[Face] = field(default_factory=list)
    chips: list[np.ndarray] = field(default_factory=list)
    chip_files: list[str] = field(default_factory=list)
    small: int = 0             # faces found but skipped by min_face
    error: Optional[str] = None
    seconds: float = 0.0


@dataclass
class AlignResult:
    manifest: pd.DataFrame     # one row per chip
    skipped: pd.DataFrame      # one row per photo without a usable face: source, reason
    photos: int
    seconds: float

    @property
    def faces(self) -> int:
        return len(self.manifest)

    def summary(self) -> dict:
        reasons = self.skipped["reason"].str.split(":").str[0].value_counts().to_dict() if len(self.skipped) else {}
        return {"photos": self.photos, "faces": self.faces, "photos_without_face": reasons.get("no face", 0),
                "unreadable": reasons.get("unreadable", 0), "seconds": round(self.seconds, 2),
                "faces_per_s": round(self.faces / self.seconds, 2) if self.seconds else None}


def list_photos(source: str | Path) -> list[str]:
    """Image files under a folder (recursively), or the one file given."""
    source = Path(source)
    if source.is_dir():
        return sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if source.is_file():
        return [str(source)]
    raise FileNotFoundError(f"no such file or folder: {source}")


def load_photo(path: str | Path, max_side: int) -> tuple[np.ndarray, int, int, float]:
    """RGB uint8 image shrunk to ``max_side``, the original width and height, and the factor from
    shrunk to original pixels.  EXIF rotation is applied (phone photos are stored sideways)."""
    with Image.open(path) as image:
        check_size(image)  # a decompression bomb is refused before any pixel is decoded
        width, height = oriented_size(image)
        draft_photo(image, max_side)
        image = to_rgb(image)  # EXIF, 16-bit, alpha and palette handled as for training images
    pixels, factor = shrink_photo(image, width, height, max_side)
    return pixels, width, height, factor


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as a viewer shows the photo (EXIF orientations 5-8 swap the sides)."""
    width, height = image.size
    if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        width, height = height, width
    return width, height


def draft_photo(image: Image.Image, max_side: int) -> None:
    """JPEG: decode at a reduced scale that still covers ``max_side`` (much faster); must come
    before anything loads the pixels.  The one place every photo path (files, uploads) decides it."""
    width, height = image.size
    if max_side and max(width, height) > max_side and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (max_side, max_side))


def shrink_photo(image: Image.Image, width: int, height: int, max_side: int) -> tuple[np.ndarray, float]:
    """A decoded RGB photo (maybe JPEG-drafted) of full size ``width`` x ``height`` -> uint8 pixels
    whose longer side is at most ``max_side`` (0: never shrunk), and the factor from those pixels
    back to full-size ones.  ``facefair predict --detect`` and ``facefair serve`` both come here, so
    one photo gives one set of pixels to the detector whichever way it arrived."""
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8), width / image.size[0]


def process_photo(path: str, detector: Detector, config: AlignConfig) -> PhotoFaces:
    """Load (shrunk to ``config.max_side``), detect, drop faces under ``min_face``, align; chips kept in memory."""
    started = time.perf_counter()
    try:
        image, width, height, factor = load_photo(path, config.max_side)
    except (OSError, SyntaxError, ValueError, EOFError, BadImage, Image.DecompressionBombError) as error:
        return PhotoFaces(path, error=f"unreadable: {error}")
    except Exception as error:  # noqa: BLE001 - one odd file must not end a run over thousands
        return PhotoFaces(path, error=f"unreadable: {type(error).__name__}: {error}")
    result = find_faces(image, factor, detector, config, path=path)
    result.width, result.height = width, height
    result.seconds = time.perf_counter() - started
    return result


def find_faces(image: np.ndarray, factor: float, detector: Detector, config: AlignConfig, *,
               path: str = "") -> PhotoFaces:
    """Faces in an already shrunk photo (see :func:`shrink_photo`; ``factor`` maps its pixels to the
    original's): detect, drop faces under ``min_face``, cut the chips from these pixels.  Boxes and
    landmarks come back in original pixels."""
    result = PhotoFaces(path, width=round(image.shape[1] * factor), height=round(image.shape[0] * factor))
    pad = int(round(config.border * max(image.shape[:2])))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else image
    try:
        found = detector.detect(padded)
    except RuntimeError as error:  # one odd file must not end a run over thousands
        result.error = f"detector failed: {error}"
        return result
    kept = [f for f in found if min(f.width, f.height) * factor >= config.min_face]
    result.small = len(found) - len(kept)
    result.chips = align_faces(padded, kept, config.size, config.padding) if config.chips else []
    height, width = image.shape[:2]
    result.faces = [f.shifted(-pad, -pad, width, height).scaled(factor) if pad else f.scaled(factor) for f in kept]
    return result


def chip_name(source: str, root: Optional[Path], index: int, suffix: str = ".jpg") -> str:
    """FairFace's naming, ``<stem>_face<i>``, keeping sub-folders of ``root`` so names don't collide."""
    path = Path(source)
    relative = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    return str(relative.with_name(f"{relative.name.split('.')[0]}_face{index}{suffix}"))


def _write_chips(result: PhotoFaces, out_dir: Path, root: Optional[Path], quality: int) -> None:
    for index, chip in enumerate(result.chips):
        name = chip_name(result.path, root, index)
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(chip).save(out_dir / name, quality=quality)
        result.chip_files.append(name)
    result.chips = []  # written: no need to send pixels back to the parent


# Per-process state of a worker: its detector, built once by the pool initializer.  A module
# attribute is the only place a multiprocessing initializer can leave something for the tasks.
_WORKER: dict = {}


def _init_worker(detector_config: DetectorConfig, config: AlignConfig, out_dir: Optional[str],
                 root: Optional[str]) -> None:
    if resolve_backend(detector_config.backend) == "mtcnn":
        import torch  # noqa: PLC0415 - one thread per worker process: the workers are the parallelism
        torch.set_num_threads(1)
    _WORKER.update(detector=make_detector(detector_config), config=config,
                   out_dir=Path(out_dir) if out_dir else None, root=Path(root) if root else None)


def _work(path: str) -> PhotoFaces:
    result = process_photo(path, _WORKER["detector"], _WORKER["config"])
    if _WORKER["out_dir"] is not None and result.chips:
        _write_chips(result, _WORKER["out_dir"], _WORKER["root"], _WORKER["config"].quality)
    return result


def _start_method(detector_config: DetectorConfig) -> str:
    """fork for dlib (no re-import of the parent's modules: a spawned worker of the CLI spends
    seconds importing it again); spawn for MTCNN, since torch in a forked child of a parent that
    already ran torch's thread pool can hang."""
    methods = multiprocessing.get_all_start_methods()
    if resolve_backend(detector_config.backend) != "mtcnn" and "fork" in methods:
        return "fork"
    return "spawn"


def iter_photos(paths: Sequence[str], detector_config: DetectorConfig, config: AlignConfig, *,
                workers: Optional[int] = 1, out_dir: Optional[str | Path] = None, root: Optional[str | Path] = None,
                detector: Optional[Detector] = None) -> Iterator[PhotoFaces]:
    """Results in input order.  ``workers`` > 1 runs that many processes; with ``out_dir`` chips
    are written there by the workers instead of returned.  ``detector`` reuses an already built
    one (in this process, so ``workers`` = 1)."""
    out = Path(out_dir) if out_dir is not None else None
    root_path = Path(root) if root is not None else None
    workers = workers or 1
    if workers <= 1 or len(paths) <= 1:
        detector = detector or make_detector(detector_config)
        for path in paths:
            result = process_photo(path, detector, config)
            if out is not None and result.chips:
                _write_chips(result, out, root_path, config.quality)
            yield result
        return
    context = multiprocessing.get_context(_start_method(detector_config))
    with context.Pool(workers, initializer=_init_worker,
                      initargs=(detector_config, config, str(out) if out else None,
                                str(root_path) if root_path else None)) as pool:
        yield from pool.imap(_work, paths, chunksize=1)


LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in ("x", "y")]
MANIFEST_COLUMNS = ["file", "source", "face_index", "faces_in_photo", "box_x0", "box_y0", "box_x1", "box_y1",
                    "det_score", *LANDMARK_COLUMNS, "landmark_scheme", "backend", "size", "padding"]


def face_record(face: Face) -> dict:
    """Box, score and landmarks of one face as manifest columns (original photo pixels)."""
    record = {f"box_{k}": round(v, 1) for k, v in zip(("x0", "y0", "x1", "y1"), face.box)}
    record["det_score"] = round(face.score, 4)
    record.update({c: round(float(v), 1) for c, v in zip(LANDMARK_COLUMNS, face.landmarks.reshape(-1))})
    record["landmark_scheme"] = face.scheme
    return record


def align_paths(paths: Iterable[str], out_dir: str | Path, detector_config: DetectorConfig,
                config: AlignConfig = AlignConfig(), *, workers: int = 1, root: Optional[str | Path] = None,
                progress: bool = True) -> AlignResult:
    """Write a chip per face to ``out_dir`` plus ``manifest.csv`` (one row per chip: ``file`` —
    the chip, relative to ``out_dir`` — ``source``, box, ``det_score``, 5 landmarks) and
    ``skipped.csv`` (photos with no face, or unreadable, with the reason)."""
    paths = list(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend = resolve_backend(detector_config.backend)
    rows, skipped = [], []
    started = time.perf_counter()
    bar = tqdm(total=len(paths), desc=f"align ({backend})", unit="photo", disable=not progress)
    for result in iter_photos(paths, detector_config, config, workers=workers, out_dir=out, root=root):
        bar.update(1)
        if result.error:
            skipped.append({"source": result.path, "reason": result.error})
        elif not result.faces:
            skipped.append({"source": result.path, "reason": "no face" + (
                f": {result.small} smaller than min_face={config.min_face}" if result.small else "")})
        for index, (face, name) in enumerate(zip(result.faces, result.chip_files)):
            rows.append({"file": name, "source": result.path, "face_index": index,
                         "faces_in_photo": len(result.faces), **face_record(face), "backend": backend,
                         "size": config.size, "padding": config.padding})
        bar.set_postfix(faces=len(rows), no_face=len(skipped))
    bar.close()
    result = AlignResult(pd.DataFrame(rows, columns=MANIFEST_COLUMNS),
                         pd.DataFrame(skipped, columns=["source", "reason"]), len(paths),
                         time.perf_counter() - started)
    result.manifest.to_csv(out / "manifest.csv", index=False)
    result.skipped.to_csv(out / "skipped.csv", index=False)
    return result
