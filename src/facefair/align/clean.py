"""Dataset cleaning: find the images in which no face can be found (as the seed projects did with
MTCNN), then flag or drop them, and count what happened.

Dataset images are usually tight face crops (UTKFace, FairFace); a detector needs some context
around a face, so each image is padded by ``border`` (edge pixels repeated) before detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from facefair.align.detectors import DetectorConfig, resolve_backend
from facefair.align.pipeline import AlignConfig, iter_photos
from facefair.data.readers import LabelTable

ACTIONS = ("flag", "drop")


@dataclass(frozen=True)
class CleanConfig:
    action: str = "flag"       # flag: keep every row, add face columns; drop: remove rows without a face
    border: float = 0.25       # context added around tight crops before detection (fraction of the side)
    max_side: int = 800
    min_face: int = 0


@dataclass
class CleanResult:
    table: LabelTable          # flagged or reduced table
    checks: pd.DataFrame       # one row per image: path, faces_found, face_score, face_status
    counts: dict               # images, with_face, no_face, several_faces, unreadable, dropped, per dataset

    def summary(self) -> str:
        c = self.counts
        return (f"{c['images']} images: {c['with_face']} with a face ({c['several_faces']} with more than one), "
                f"{c['no_face']} without, {c['unreadable']} unreadable; {c['dropped']} dropped")


def check_faces(paths: Sequence[str], detector_config: DetectorConfig, config: CleanConfig = CleanConfig(), *,
                workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Per image: how many faces the detector finds, the best score, and ``face_status``
    (``face``, ``no_face`` or ``unreadable``)."""
    align_config = AlignConfig(max_side=config.max_side, min_face=config.min_face, border=config.border, chips=False)
    rows = []
    bar = tqdm(total=len(paths), desc=f"clean ({resolve_backend(detector_config.backend)})", unit="img",
               disable=not progress)
    for result in iter_photos(list(paths), detector_config, align_config, workers=workers):
        bar.update(1)
        status = "unreadable" if result.error else ("face" if result.faces else "no_face")
        rows.append({"path": result.path, "faces_found": len(result.faces),
                     "face_score": max((f.score for f in result.faces), default=np.nan), "face_status": status,
                     "face_error": result.error})
    bar.close()
    return pd.DataFrame(rows, columns=["path", "faces_found", "face_score", "face_status", "face_error"])


def clean_table(table: LabelTable, detector_config: DetectorConfig, config: CleanConfig = CleanConfig(), *,
                workers: int = 1, progress: bool = True) -> CleanResult:
    """Check every image of ``table``; ``flag`` adds ``faces_found``, ``face_score`` and
    ``face_status`` to each row, ``drop`` also removes rows without a face (and unreadable ones)."""
    if config.action not in ACTIONS:
        raise ValueError(f"unknown action {config.action!r}: {', '.join(ACTIONS)}")
    checks = check_faces(table.frame["path"].tolist(), detector_config, config, workers=workers, progress=progress)
    frame = table.frame.reset_index(drop=True).copy()
    for column in ("faces_found", "face_score", "face_status"):
        frame[column] = checks[column].to_numpy()
    keep = frame["face_status"] == "face"
    counts = {
        "images": len(frame), "with_face": int(keep.sum()), "no_face": int((frame["face_status"] == "no_face").sum()),
        "several_faces": int((frame["faces_found"] > 1).sum()),
        "unreadable": int((frame["face_status"] == "unreadable").sum()),
        "dropped": int((~keep).sum()) if config.action == "drop" else 0,
        "backend": resolve_backend(detector_config.backend),
    }
    if "dataset" in frame:
        counts["no_face_by_dataset"] = frame.loc[~keep, "dataset"].value_counts().to_dict()
    if config.action == "drop":
        frame = frame[keep].reset_index(drop=True)
    return CleanResult(LabelTable(frame, table.race_scheme, table.problems), checks, counts)
