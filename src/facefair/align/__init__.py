"""Raw photos in: face detection, FairFace alignment, dataset cleaning and merging.

Heavy backends (dlib, facenet-pytorch) are imported only when a detector is built, so importing
this package never needs them.
"""

from facefair.align.detectors import BACKENDS, DetectorConfig, Face, MissingBackend, available_backends, make_detector

__all__ = ["BACKENDS", "DetectorConfig", "Face", "MissingBackend", "available_backends", "make_detector"]
