"""Face detectors behind one interface: an RGB uint8 image in, a list of :class:`Face` out.

Backends (all optional dependencies, imported only when a detector is built, so ``facefair``
works without them and a missing one fails with the pip command that fixes it):

- ``dlib``: dlib's CNN (MMOD) detector, FairFace's own recipe. Accurate, but a CPU build of
  dlib (``dlib-bin``) needs seconds per 800 px photo, so it is not the default on CPU.
- ``dlib-hog``: dlib's HOG frontal-face detector; tens of milliseconds per photo on CPU.
- ``mtcnn``: MTCNN from ``facenet-pytorch`` (weights ship in the wheel); torch, so CPU or GPU.

Both dlib backends find the 5 landmarks with dlib's 5-point shape predictor, so their chips
are exactly FairFace's (``dlib.get_face_chips``). MTCNN has its own 5 landmarks (eye centres,
nose tip, mouth corners); :mod:`facefair.align.chips` maps them onto the same chip geometry.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

#: Backend names accepted everywhere (CLI ``--detect``); ``auto`` is resolved by :func:`resolve_backend`.
BACKENDS = ("dlib", "dlib-hog", "mtcnn")

DLIB_INSTALL = "pip install dlib-bin face-recognition-models"
MTCNN_INSTALL = "pip install --no-deps facenet-pytorch requests  (--no-deps: its metadata pins an old torch)"


class MissingBackend(ImportError):
    """A detector backend whose package is not installed; the message says what to install."""


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image given to the detector."""

    box: tuple[float, float, float, float]   # x0, y0, x1, y1 (x1/y1 exclusive), clipped to the image
    score: float                             # detector confidence; scales differ between backends
    landmarks: np.ndarray = field(repr=False)  # (5, 2) x, y
    scheme: str = "dlib5"                    # which 5 points: "dlib5" (eye corners + nose base) or "mtcnn5"

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def shifted(self, dx: float, dy: float, width: int, height: int) -> "Face":
        """Moved by (dx, dy), box clipped to a ``width`` x ``height`` image (undoing a border)."""
        x0, y0, x1, y1 = self.box
        box = _clip_box(x0 + dx, y0 + dy, x1 + dx, y1 + dy, width, height)
        return Face(box, self.score, self.landmarks + np.array([dx, dy]), self.scheme)

    def scaled(self, factor: float) -> "Face":
        """The same face in an image ``factor`` times larger (detection runs on a shrunk copy)."""
        if factor == 1:
            return self
        return Face(tuple(v * factor for v in self.box), self.score, self.landmarks * factor, self.scheme)


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to build a detector; plain data so it can be sent to worker processes."""

    backend: str = "dlib-hog"
    upsample: int = 1              # dlib: times the image is doubled before detection (FairFace: 1)
    threshold: Optional[float] = None  # minimum score; None = the backend's default (see make_detector)
    model_dir: Optional[str] = None    # folder with dlib's .dat files; None = face-recognition-models
    device: str = "cpu"                # mtcnn only
    mtcnn_min_face: int = 20           # mtcnn's smallest face searched, pixels
    torch_threads: Optional[int] = None  # mtcnn on CPU: torch threads while detecting (None: leave as is);
                                         # its many tiny convolutions gain little from threads and lose
                                         # badly when the cores are already busy


class Detector(Protocol):
    config: DetectorConfig
    scheme: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, best score first."""


def _clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[float, ...]:
    # Detectors happily return boxes past the border of a face cut by the frame; report what is visible.
    return (float(max(0, x0)), float(max(0, y0)), float(min(width, x1)), float(min(height, y1)))


def _import_dlib():
    try:
        import dlib  # noqa: PLC0415 - optional dependency
    except ImportError as error:
        raise MissingBackend(f"the dlib backends need dlib: {DLIB_INSTALL}") from error
    return dlib


def dlib_model_path(name: str, model_dir: Optional[str] = None) -> Path:
    """Path of one of dlib's model files (``mmod_human_face_detector.dat``,
    ``shape_predictor_5_face_landmarks.dat``).  They ship (CC0) in ``face-recognition-models``;
    its ``__init__`` imports ``pkg_resources``, which new setuptools no longer has, so the folder
    is found from the package spec without importing it."""
    if model_dir:
        folder = Path(model_dir)
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise MissingBackend(f"dlib's model files come from face-recognition-models: {DLIB_INSTALL}")
        folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    path = folder / name
    if not path.is_file():
        raise MissingBackend(f"{path} not found; install face-recognition-models ({DLIB_INSTALL}) or pass model_dir")
    return path


class _DlibLandmarks:
    """dlib's 5-point shape predictor on a detector's rectangles."""

    scheme = "dlib5"

    def __init__(self, config: DetectorConfig):
        self.dlib = _import_dlib()
        self.config = config
        self.predictor = self.dlib.shape_predictor(
            str(dlib_model_path("shape_predictor_5_face_landmarks.dat", config.model_dir)))

    def _faces(self, image: np.ndarray, rects, scores) -> list[Face]:
        height, width = image.shape[:2]
        faces = []
        for rect, score in zip(rects, scores):
            shape = self.predictor(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            # dlib rectangles are inclusive: right/bottom are the last pixel, hence +1.
            box = _clip_box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1, width, height)
            faces.append(Face(box, float(score), points, self.scheme))
        return sorted(faces, key=lambda f: -f.score)


class DlibCnnDetector(_DlibLandmarks):
    """FairFace's detector: ``cnn_face_detection_model_v1`` (MMOD) + 5-point landmarks."""

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        self.cnn = self.dlib.cnn_face_detection_model_v1(
            str(dlib_model_path("mmod_human_face_detector.dat", config.model_dir)))
        self.threshold = 0.0 if config.threshold is None else config.threshold  # MMOD reports > 0 by default

    def detect(self, image: np.ndarray) -> list[Face]:
        found = [d for d in self.cnn(np.ascontiguousarray(image), self.config.upsample)
                 if d.confidence >= self.threshold]
        return self._faces(image, [d.rect for d in found], [d.confidence for d in found])


class DlibHogDetector(_DlibLandmarks):
    """dlib's HOG + linear SVM frontal detector: fast on CPU, weaker on turned or small faces."""

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        self.hog = self.dlib.get_frontal_face_detector()
        # run()'s adjust_threshold: 0 is dlib's default operating point; scores are SVM margins.
        self.threshold = 0.0 if config.threshold is None else config.threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        rects, scores, _ = self.hog.run(np.ascontiguousarray(image), self.config.upsample, self.threshold)
        return self._faces(image, list(rects), list(scores))


class MtcnnDetector:
    """MTCNN (facenet-pytorch) boxes, probabilities and its own 5 landmarks."""

    scheme = "mtcnn5"

    def __init__(self, config: DetectorConfig):
        try:
            from facenet_pytorch import MTCNN  # noqa: PLC0415 - optional dependency
        except ImportError as error:
            raise MissingBackend(f"the mtcnn backend needs facenet-pytorch: {MTCNN_INSTALL}") from error
        self.config = config
        self.threshold = 0.9 if config.threshold is None else config.threshold
        self.mtcnn = MTCNN(keep_all=True, min_face_size=config.mtcnn_min_face, device=config.device,
                           select_largest=False, post_process=False)

    def detect(self, image: np.ndarray) -> list[Face]:
        import torch  # noqa: PLC0415 - already imported by facenet-pytorch

        previous = torch.get_num_threads()
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        try:
            boxes, probs, points = self.mtcnn.detect(np.ascontiguousarray(image), landmarks=True)
        finally:
            torch.set_num_threads(previous)
        if boxes is None:
            return []
        height, width = image.shape[:2]
        faces = [Face(_clip_box(*box, width, height), float(prob), np.asarray(lm, dtype=np.float64), self.scheme)
                 for box, prob, lm in zip(boxes, probs, points) if prob >= self.threshold]
        return sorted(faces, key=lambda f: -f.score)


def resolve_backend(backend: str) -> str:
    """``auto``: FairFace's CNN detector where dlib was built with CUDA, else HOG (the CNN
    detector costs seconds per photo on CPU)."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector {backend!r}: auto, {', '.join(BACKENDS)}")
        return backend
    try:
        dlib = _import_dlib()
    except MissingBackend:
        return "mtcnn" if importlib.util.find_spec("facenet_pytorch") else "dlib-hog"
    return "dlib" if getattr(dlib, "DLIB_USE_CUDA", False) else "dlib-hog"


def make_detector(config: DetectorConfig) -> Detector:
    backend = resolve_backend(config.backend)
    if backend == "dlib":
        return DlibCnnDetector(config)
    if backend == "dlib-hog":
        return DlibHogDetector(config)
    return MtcnnDetector(config)


def available_backends() -> list[str]:
    """Backends whose packages are installed (without building them)."""
    out = []
    if importlib.util.find_spec("dlib") and importlib.util.find_spec("face_recognition_models"):
        out += ["dlib", "dlib-hog"]
    if importlib.util.find_spec("facenet_pytorch"):
        out.append("mtcnn")
    return out
