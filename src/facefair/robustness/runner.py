"""``run_robustness``: a run's test faces under every corruption, one predictions CSV per condition,
each audited with ``facefair.audit`` and gathered into one tidy table.

Every condition goes through the same path: decode at ``work_size``, corrupt (or not, for the
``clean`` reference), resize to the model's input as evaluation does, predict.  So a drop against
``clean`` is the corruption's doing and nothing else's, and the predictions CSVs keep the audit's
contract: another model's outputs on the same files can be audited the same way.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd

from facefair.robustness.config import CLEAN, RobustnessConfig
from facefair.robustness.corruptions import apply_corruption
from facefair.robustness.reframe import PREFIX, reframe_images
from facefair.run import Run

log = logging.getLogger("facefair")


@dataclass
class Condition:
    corruption: str
    severity: float          # 0 for clean; 1-5; the padding for reframe-*
    images: np.ndarray       # (N, S, S, 3) uint8 at work size
    available: np.ndarray    # bool: rows that have an image to predict (a detector may miss a face)

    @property
    def name(self) -> str:
        severity = f"{self.severity:g}"
        return CLEAN if self.corruption == CLEAN else f"{self.corruption}-{severity}"


@dataclass
class RobustnessRun:
    table: pd.DataFrame                  # tidy: robustness.csv
    faces: pd.DataFrame                  # the evaluated faces (path + labels)
    predictions: dict[str, Path] = field(default_factory=dict)   # condition name -> CSV
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model: str = ""


def stratified_sample(frame: pd.DataFrame, limit: Optional[int], seed: int) -> pd.DataFrame:
    """``limit`` rows keeping the race x gender x age-group mix (rare cells pooled, as splits do)."""
    if not limit or limit >= len(frame):
        return frame.reset_index(drop=True)
    from sklearn.model_selection import train_test_split

    from facefair.data.splits import _room, strata
    by = [c for c in ("race", "gender", "age_group") if c in frame]
    labels = strata(frame, by, 2, _room(len(frame), limit / len(frame)))
    keep, _ = train_test_split(frame.index, train_size=limit, random_state=seed, stratify=labels)
    return frame.loc[sorted(keep)].reset_index(drop=True)


def load_faces(run: Run, config: RobustnessConfig) -> tuple[pd.DataFrame, dict]:
    """The run's ``config.split`` faces with their labels, sampled to ``config.limit``."""
    run_config = run.config()
    frame = run.split_frame(config.split, run_config)
    return stratified_sample(frame, config.limit, config.seed), {"amp": run_config.train.amp,
                                                                "bf16": run_config.train.bf16}


def decode_faces(paths: list[str], size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from facefair.data.images import try_decode
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    errors = []
    for i, path in enumerate(paths):
        array, error = try_decode(path, size)
        if array is None:
            errors.append(error)
        else:
            images[i], ok[i] = array, True
    return images, ok, errors


def image_seed(seed: int, corruption: str, severity: int, row: int) -> int:
    """A seed per (corruption, severity, face): repeatable, and distinct across conditions."""
    return zlib.crc32(f"{seed}\x1f{corruption}\x1f{severity}\x1f{row}".encode())


def conditions(images: np.ndarray, ok: np.ndarray, config: RobustnessConfig, progress=None,
               paths: Optional[list[str]] = None) -> Iterator[Condition]:
    """``clean`` first, then every corruption x severity, then re-framing per detector x padding."""
    yield Condition(CLEAN, 0, images, ok)
    for corruption in config.image_corruptions:
        for severity in config.severities:
            out = np.empty_like(images)
            for row in range(len(images)):
                out[row] = apply_corruption(corruption, images[row], severity,
                                            image_seed(config.seed, corruption, severity, row)) if ok[row] \
                    else images[row]
            if progress is not None:
                progress(f"{corruption} severity {severity}")
            yield Condition(corruption, severity, out, ok)
    if config.reframes:
        for detector in config.reframe.detectors:
            chips, found = reframe_images(images, detector, config.reframe.paddings, config.reframe, paths=paths)
            if progress is not None:
                progress(f"re-detected with {detector}: {int((found & ok).sum())} of {int(ok.sum())} faces")
            for padding in config.reframe.paddings:
                yield Condition(f"{PREFIX}{detector}", padding, chips[padding], found & ok)


def predict_condition(model, condition: Condition, faces: pd.DataFrame, config: RobustnessConfig) -> pd.DataFrame:
    """The audit's predictions table for one condition (rows without an image get no prediction),
    predicted through the inference module with the settings every command shares."""
    from facefair.data.images import resize_batch
    from facefair.inference.engine import predict_arrays
    from facefair.table import predictions_frame

    size = model.config.resolved_size()
    resized = resize_batch(condition.images, size)
    outputs = predict_arrays(model, resized, config.settings(), rows=np.flatnonzero(condition.available))
    frame = predictions_frame(faces, model.tasks, outputs)
    frame.insert(1, "corruption", condition.corruption)
    frame.insert(2, "severity", condition.severity)
    return frame


def run_robustness(run_dir: str | Path, out_dir: str | Path, config: Optional[RobustnessConfig] = None,
                   progress: bool = True) -> RobustnessRun:
    """Evaluate ``run_dir``'s split under every condition; write ``out_dir/predictions/*.csv``,
    ``robustness.csv``, ``faces.csv`` and ``robustness.html``."""
    from facefair.robustness.html import write_html
    from facefair.robustness.results import robustness_table
    from facefair.inference.sources import load_model
    from facefair.table import write_predictions

    config = config or RobustnessConfig()
    started = time.perf_counter()
    run, out = Run(run_dir), Path(out_dir)
    faces, _ = load_faces(run, config)
    # The precision is the inference default (config.bf16: as trained), as in predict and evaluate.
    model = load_model(run.model_source(), config.settings(), trust_checkpoint=config.trust_checkpoint)
    images, ok, errors = decode_faces(faces["path"].tolist(), config.work_size)
    notes = [f"{len(errors)} unreadable images have no prediction: {'; '.join(errors[:3])}"] if errors else []
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    faces.to_csv(out / "faces.csv", index=False)
    result = RobustnessRun(pd.DataFrame(), faces, notes=notes, model=str(run.folder))
    say = (lambda text: print(f"robustness: {text} ({time.perf_counter() - started:.0f} s)", flush=True)) \
        if progress else None
    for condition in conditions(images, ok, config, progress=say, paths=faces["path"].tolist()):
        frame = predict_condition(model, condition, faces, config)
        path = out / "predictions" / f"{condition.name}.csv"
        # atomic: a run killed mid-way leaves only whole CSVs, which --from-predictions can audit
        write_predictions(frame, path)
        result.predictions[condition.name] = path
    if say:
        say(f"{len(result.predictions)} conditions predicted; auditing")
    result.table = robustness_table(result.predictions.values(), audit_config(config))
    result.seconds = time.perf_counter() - started
    result.table.to_csv(out / "robustness.csv", index=False)
    write_html(result, config, out / "robustness.html")
    return result


def audit_config(config: RobustnessConfig):
    """The audit settings every condition is judged with (race, gender, age group, race x gender)."""
    from facefair.audit import AuditConfig
    return AuditConfig(n_boot=config.n_boot, seed=config.seed, ci_level=config.ci_level, tasks=config.tasks,
                       min_group_size=config.min_group_size, intersections=(("race", "gender"),))


def audit_folder(predictions_dir: str | Path, out_dir: str | Path, config: Optional[RobustnessConfig] = None
                 ) -> RobustnessRun:
    """The auditing half alone, on a folder of per-condition predictions CSVs from any model (one
    of them ``clean.csv``; the others carry ``corruption``/``severity`` columns or are named
    ``<corruption>-<severity>.csv``)."""
    from facefair.robustness.html import write_html
    from facefair.robustness.results import robustness_table
    from facefair.table import read_predictions

    config = config or RobustnessConfig()
    started = time.perf_counter()
    folder, out = Path(predictions_dir), Path(out_dir)
    paths = sorted(folder.glob("*.csv"))
    if not paths:
        raise FileNotFoundError(f"no predictions CSV in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    table = robustness_table(paths, audit_config(config))
    clean = read_predictions(folder / "clean.csv") if (folder / "clean.csv").is_file() else pd.DataFrame()
    result = RobustnessRun(table, clean, {p.stem: p for p in paths}, model=str(folder),
                           seconds=time.perf_counter() - started)
    table.to_csv(out / "robustness.csv", index=False)
    write_html(result, config, out / "robustness.html")
    return result
